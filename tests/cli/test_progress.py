"""Progress on long commands: drawn on a terminal (a pseudo-terminal here), with the count, the rate and the time
left; never in a pipe or a log, and off with progress=false."""

from __future__ import annotations

import os
import pty
import subprocess

import numpy as np
import pytest
import torch
from conftest import motionlab_bin, run_command, subprocess_env
from PIL import Image

from motionlab.data.video_io import write_video
from motionlab.models import create_model


@pytest.fixture(scope="module")
def tiny_animation(tmp_path_factory):
    """A tiny Animator checkpoint (its spec and random weights), a portrait and a 6-frame driver."""
    root = tmp_path_factory.mktemp("progress")
    torch.manual_seed(0)
    net = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "motionlab": {"task": "animator", "models": {"net": net.model_info.spec()}}}, root / "tiny.ckpt")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / "portrait.png")
    write_video(root / "driver.mp4", [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(6)], fps=25)
    return root


def _on_terminal(argv: list[str], cwd) -> str:
    """Run a command with its stdout and stderr on a pseudo-terminal; return what it drew."""
    parent, child = pty.openpty()
    process = subprocess.Popen(argv, stdout=child, stderr=child, stdin=subprocess.DEVNULL, cwd=cwd, env={**subprocess_env(cwd), "COLUMNS": "160"})
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    os.close(parent)
    return b"".join(chunks).decode(errors="replace")


def test_animate_draws_progress_on_a_terminal_only(tiny_animation):
    root = tiny_animation
    argv = [motionlab_bin("motionlab-animate"), f"ckpt={root / 'tiny.ckpt'}", f"portrait={root / 'portrait.png'}", f"driver={root / 'driver.mp4'}"]
    drawn = _on_terminal([*argv, f"out={root / 'a.mp4'}"], root)
    assert "animating" in drawn and "6/6" in drawn and "frames" in drawn and "left" in drawn
    assert "animating" not in _on_terminal([*argv, f"out={root / 'b.mp4'}", "progress=false"], root)
    piped = subprocess.run([*argv, f"out={root / 'c.mp4'}"], capture_output=True, text=True, cwd=root, env=subprocess_env(root), timeout=300)
    assert piped.returncode == 0 and "animating" not in piped.stderr + piped.stdout


def test_eval_counts_clips(tiny_animation, tmp_path, monkeypatch):
    """In this process (no terminal), with the terminal check forced: eval counts the clips it scores (how many there
    are is known only at the end); progress=false draws nothing. (Export's graph callback: test_liveportrait.py.)"""
    import motionlab.cli.eval_run as eval_run

    # the terminal check as the command sees it (its module holds the name it imported)
    monkeypatch.setattr(eval_run, "progress_wanted", lambda setting: setting is not False)
    monkeypatch.chdir(tmp_path)
    for folder in ("generated", "drivers"):
        (tmp_path / folder).mkdir()
        write_video(tmp_path / folder / "clip.mp4", [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)], fps=25)
    code, out, err = run_command(["motionlab-eval", "ckpt=null", "generated_dir=generated", "driver_dir=drivers", "metrics=[temporal]",
                                  "wandb=false", "image_size=32"])
    assert code == 0, err[-2000:]
    drawn = out + err
    assert "scoring" in drawn and "1/?" in drawn and "clips" in drawn, drawn[-1500:]
    code, out, err = run_command(["motionlab-eval", "ckpt=null", "generated_dir=generated", "driver_dir=drivers", "metrics=[temporal]",
                                  "wandb=false", "image_size=32", "progress=false"])
    assert code == 0 and "scoring" not in out + err
