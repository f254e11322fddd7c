"""Faults of real processes and disks: kill -9 during training and during checkpoint writes, a full disk while a
checkpoint or a video is written, a read-only output folder.
Nothing written is ever half a file, and a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
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
    """SIGKILL ``process`` (started in its own session) and its children at ``moment``: ``writing`` as soon as a checkpoint's temporary file exists (mid-write),
    ``trained`` just after a new last.ckpt landed. Returns whether it was killed (False: it finished first)."""
    seen = {p: p.stat().st_mtime_ns for p in root.glob("logs/**/last.ckpt")}
    while process.poll() is None and time.monotonic() < deadline:
        if moment == "writing":
            hit = any(root.glob("logs/**/checkpoints/.*.tmp.ckpt"))
        else:
            hit = any(p.stat().st_mtime_ns != seen.get(p) for p in root.glob("logs/**/last.ckpt"))
        if hit:
            # the whole process group, as a scheduler ends a job: W&B's service process goes with it
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.001)
    return False


def test_kill_9_soak_resumes_to_identical_weights(tmp_path):
    """Five SIGKILLs of `motionlab-train ... run_name=soak` (mid checkpoint write and between writes), the same
    command started again after each, as a cluster resubmits a job: every checkpoint on disk loads weights-only; each
    start resumes from the run folder's last.ckpt and continues the same W&B run; the run that finally completes holds
    the weights of a run that was never interrupted, bit for bit; the temporary files of killed writes are gone."""
    from motionlab import wandb_run_id
    from motionlab.train import train

    train(compose_train(_common(tmp_path / "straight"), tmp_path / "straight" / "run"))
    expected = _weights(tmp_path / "straight" / "run" / "checkpoints" / "last.ckpt")

    soak = tmp_path / "soak"
    command = [motionlab_bin("motionlab-train"), *_common(soak), "run_name=soak", "logger=wandb"]
    kills = 0
    for moment in ["trained", "writing", "trained", "writing", "trained", "writing", "trained", "writing"]:
        if kills == 5:
            break
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=subprocess_env(soak), cwd=tmp_path,
                                   start_new_session=True)
        killed = _kill_when(process, soak, moment, time.monotonic() + 240)
        if not killed:
            assert process.wait() == 0, process.stderr.read().decode()[-3000:]
            break
        kills += 1
        for checkpoint in _checkpoints(soak):  # never half a file
            assert "state_dict" in torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert kills >= 5, f"only {kills} kills landed before the run finished"
    final = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(soak), cwd=tmp_path, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    run = soak / "logs" / "quickstart" / "runs" / "soak"
    assert [p.parent.parent for p in soak.glob("logs/**/last.ckpt")] == [run]  # every start worked in the one folder
    assert "resuming from this run folder's" in (run / "quickstart.log").read_text()
    wandb_runs = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) >= 2 and {name.rsplit("-", 1)[1] for name in wandb_runs} == {wandb_run_id(str(run))}
    resumed = _weights(run / "checkpoints" / "last.ckpt")
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


@contextmanager
def small_filesystem(path: Path, size_kib: int, read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size_kib`` KiB at ``path`` (read-only if asked); the test skips where mounting is not allowed
    (mounting needs root or CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}): the test needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system, then free ``leave`` bytes of it."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while filler.write(b"\0" * 4096):
                pass
        except OSError as error:
            assert error.errno == errno.ENOSPC
        filler.truncate(max(0, filler.tell() - leave))


def test_disk_full_while_writing_a_video(animator_base_checkpoint, toy_world, tmp_path, monkeypatch):
    """A real full file system under `motionlab-animate out=` and then `gif=`: one line naming the file, exit 2, the
    previous file intact, no temporary file left."""
    monkeypatch.chdir(tmp_path)
    with small_filesystem(tmp_path / "small", 512) as small:
        for name in ("out.mp4", "side.gif"):
            (small / name).write_bytes(b"previous good output")
        _fill(small, leave=0)
        inputs = [f"ckpt={animator_base_checkpoint}", f"portrait={toy_world / 'id_0000.png'}", f"driver={toy_world / 'id_0001_video'}"]
        for target, outputs in ((small / "out.mp4", [f"out={small / 'out.mp4'}"]),
                                (small / "side.gif", [f"out={tmp_path / 'out.mp4'}", f"gif={small / 'side.gif'}"])):
            code, _, err = run_command(["motionlab-animate", *inputs, *outputs])
            assert code == 2, err[-3000:]
            assert err.strip().splitlines()[-1] == (f"motionlab-animate: error: no space left on the device writing {target}; "
                                                    "free space or write elsewhere (nothing written was left half-done)")
            assert sorted(p.name for p in small.iterdir()) == ["filler", "out.mp4", "side.gif"]
            assert all((small / name).read_bytes() == b"previous good output" for name in ("out.mp4", "side.gif"))


def test_read_only_output(animator_base_checkpoint, lipsync_checkpoints, toy_world, tmp_path, monkeypatch):
    """An output on a read-only file system is refused before any work, naming the key and the folder; so is
    lip-sync's ONNX export into a read-only cache, saying how to choose another."""
    monkeypatch.chdir(tmp_path)
    with small_filesystem(tmp_path / "ro", 64, read_only=True) as read_only:
        code, _, err = run_command(["motionlab-animate", f"ckpt={animator_base_checkpoint}", f"portrait={toy_world / 'id_0000.png'}",
                                    f"driver={toy_world / 'id_0001_video'}", f"out={read_only / 'out.mp4'}"])
        assert code == 2 and "Traceback" not in err, err[-3000:]
        assert err.strip().splitlines()[-1] == (f"motionlab-animate: error: out={read_only / 'out.mp4'}: {read_only} cannot be "
                                                "written to; choose another output folder")
    unet, clip = lipsync_checkpoints["unet"], lipsync_checkpoints["clip"]
    with small_filesystem(tmp_path / "cache", 64, read_only=True) as cache:
        monkeypatch.setenv("MOTIONLAB_CACHE_DIR", str(cache))
        code, _, err = run_command(["motionlab-lipsync", f"ckpt={unet}", f"template={clip}", f"audio={clip / 'aud.wav'}",
                                    f"out={tmp_path / 'out.mp4'}", "runtime=onnx"])
        assert code == 2 and "Traceback" not in err, err[-3000:]
        assert re.fullmatch(rf"motionlab-lipsync: error: onnx={cache}/onnx/\S+\.onnx: {cache} cannot be written to; choose another output "
                            r"folder \(the ONNX cache: set MOTIONLAB_CACHE_DIR to a writable folder, or give onnx=<file>\)",
                            err.strip().splitlines()[-1]), err[-2000:]
        assert not (tmp_path / "out.mp4").exists()
