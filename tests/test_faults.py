"""Faults of real processes and disks: kill -9 during training and during checkpoint writes, a full disk while a
checkpoint is written. Nothing written is ever half a file, and a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import torch

from conftest import compose_train, motionlab_bin, run_command, subprocess_env, tiny_overrides


def _common(root: Path) -> list[str]:
    return ["experiment=quickstart", "logger=none", "trainer.deterministic=true", "trainer.max_epochs=4", *tiny_overrides(root)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _checkpoints(root: Path) -> list[Path]:
    """The checkpoints on disk (not the temporary files of writes in progress, which start with a dot)."""
    return sorted(p for p in root.glob("logs/**/checkpoints/*.ckpt") if not p.name.startswith("."))


def _kill_when(process: subprocess.Popen, root: Path, moment: str, deadline: float) -> bool:
    """SIGKILL ``process`` at ``moment``: ``writing`` as soon as a checkpoint's temporary file exists (mid-write),
    ``trained`` just after a new last.ckpt landed. Returns whether it was killed (False: it finished first)."""
    seen = {p: p.stat().st_mtime_ns for p in root.glob("logs/**/last.ckpt")}
    while process.poll() is None and time.monotonic() < deadline:
        if moment == "writing":
            hit = any(root.glob("logs/**/checkpoints/.*.tmp.ckpt"))
        else:
            hit = any(p.stat().st_mtime_ns != seen.get(p) for p in root.glob("logs/**/last.ckpt"))
        if hit:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.001)
    return False


def test_kill_9_soak_resumes_to_identical_weights(tmp_path):
    """Five SIGKILLs of `motionlab-train ... ckpt_path=last` (mid checkpoint write and between writes); after each,
    every checkpoint on disk loads weights-only; the run that finally completes holds the weights of a run that was
    never interrupted, bit for bit; the temporary files of killed writes are gone."""
    from motionlab.train import train

    train(compose_train(_common(tmp_path / "straight"), tmp_path / "straight" / "run"))
    expected = _weights(tmp_path / "straight" / "run" / "checkpoints" / "last.ckpt")

    soak = tmp_path / "soak"
    args = [motionlab_bin("motionlab-train"), *_common(soak), "ckpt_path=last"]
    first = [motionlab_bin("motionlab-train"), *_common(soak)]
    kills = 0
    for attempt, moment in enumerate(["trained", "writing", "trained", "writing", "trained", "writing", "trained", "writing"]):
        if kills == 5:
            break
        process = subprocess.Popen(args if _checkpoints(soak) else first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=subprocess_env(soak), cwd=tmp_path)
        killed = _kill_when(process, soak, moment, time.monotonic() + 240)
        if not killed:
            assert process.wait() == 0, process.stderr.read().decode()[-3000:]
            break
        kills += 1
        for checkpoint in _checkpoints(soak):  # never half a file
            assert "state_dict" in torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert kills >= 5, f"only {kills} kills landed before the run finished"
    final = subprocess.run(args, capture_output=True, text=True, env=subprocess_env(soak), cwd=tmp_path, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    newest = max(soak.glob("logs/**/last.ckpt"), key=lambda p: p.stat().st_mtime)
    resumed = _weights(newest)
    assert resumed.keys() == expected.keys()
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key
    assert not list(soak.glob("logs/**/.*.tmp*"))  # the killed writes' temporary files were cleaned by the next run


def test_disk_full_while_writing_a_checkpoint(tmp_path, monkeypatch):
    """ENOSPC from the file system during the second last.ckpt write: `motionlab-train` stops with one line naming the
    file and exit code 2; the first last.ckpt is still there, whole; no temporary file is left."""
    import motionlab.utils.io as io_module

    real_open = open
    writes = []

    class FullDisk:
        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.file.name)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

    def filling_open(path, mode="r", *args, **kwargs):
        file = real_open(path, mode, *args, **kwargs)
        if "w" in mode and str(path).endswith(".tmp.ckpt") and Path(path).name.startswith(".last."):
            writes.append(path)
            if len(writes) >= 2:
                return FullDisk(file)
        return file

    monkeypatch.setattr(io_module, "open", filling_open, raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_command(["motionlab-train", *_common(tmp_path), "trainer.max_epochs=2"])
    assert code == 2, err[-3000:]
    last = next(tmp_path.glob("logs/**/checkpoints/last.ckpt"))
    assert err.strip().splitlines()[-1] == (f"motionlab-train: error: no space left on the device writing {last}; "
                                            "free space or write elsewhere (nothing written was left half-done)")
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0  # the first epoch's, whole
    assert not list(tmp_path.glob("logs/**/.*.tmp*"))
