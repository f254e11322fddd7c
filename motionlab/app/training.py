"""The app's Train tab: LoRA on a limited-data target (the identity -> target flow), run as ``motionlab-train`` in a
subprocess bound to the app's runs folder, exactly as the command line runs it.

A job stages the uploaded target (one video, or images as one frame folder) under ``<runs>/app/targets/<job>/``,
optionally with an identity profile of it (``profile.json``: the same code as ``motionlab-data profile``), and starts
``motionlab-train experiment=lora_animator_target init_ckpt=<base> data.root=<target> ...`` with an argument list
(never a shell string). Cancel interrupts it (SIGINT: Lightning stops, the last checkpoint stays); Resume runs the same
command again, which continues from the run folder's ``last.ckpt``. When the run ends, its adapters are exported
beside it (``<run>/lora.safetensors``, ``motionlab-export lora``'s code) and the Animate tab lists them.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from motionlab.utils.errors import InputError

TARGET_EXPERIMENT, TARGET_TASK = "lora_animator_target", "lora_animator_target"
VIDEO_SUFFIXES, IMAGE_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm"), (".png", ".jpg", ".jpeg")


@dataclass
class TrainingJob:
    """One Train-tab job: its command, run folder, log file and (while it runs) process."""

    command: list[str]
    run_dir: Path
    log_file: Path
    target_dir: Path
    profile: Path | None = None
    process: subprocess.Popen | None = None
    state: str = "starting"
    lora_file: Path | None = None

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.target_dir)
        self.state = "running"

    def poll(self) -> str:
        """The job's state (running, finished, failed, cancelled), exporting the adapters once it has finished."""
        if self.process is None or self.state != "running":
            return self.state
        code = self.process.poll()
        if code is None:
            return self.state
        self.state = "finished" if code == 0 else "failed"
        if self.state == "finished":
            from motionlab.inference.export import export_lora_adapter

            self.lora_file = Path(export_lora_adapter(self.run_dir / "checkpoints" / "last.ckpt", self.run_dir / "lora.safetensors")["out"])
        return self.state

    def cancel(self, timeout: float = 60.0) -> None:
        """Interrupt the run as Ctrl-C does; Lightning stops and the run keeps its last checkpoint."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.state = "cancelled"

    def log_tail(self, lines: int = 5) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def stage_target(files: list[str], folder: Path) -> str:
    """Copy the uploads into ``folder`` in a layout the target data module reads: one video as ``<name>.<ext>``, or
    images as the frames of one clip ``<name>/``; returns the clip's name (``data.identity``)."""
    paths = [Path(f) for f in files or []]
    if not paths:
        raise FileNotFoundError("upload the target: one video, or images of it")
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(videos) + len(images) != len(paths) or (videos and images) or len(videos) > 1:
        raise InputError(f"the target is one video ({', '.join(VIDEO_SUFFIXES)}) or images ({', '.join(IMAGE_SUFFIXES)}); got "
                         + ", ".join(p.name for p in paths))
    folder.mkdir(parents=True, exist_ok=True)
    if videos:
        name = "target"
        shutil.copy2(videos[0], folder / f"{name}{videos[0].suffix.lower()}")
        return name
    if len(images) < 4:
        raise InputError(f"the target needs at least 4 images (half train, half held out); got {len(images)}")
    clip = folder / "target"
    clip.mkdir()
    for index, image in enumerate(sorted(images, key=lambda p: p.name)):
        shutil.copy2(image, clip / f"{index:04d}{image.suffix.lower()}")
    return clip.name


def training_command(runs: Path, base: str, target_root: Path, identity: str, run_name: str, rank: int, lr: float, steps: int,
                     batch: int) -> list[str]:
    """The ``motionlab-train`` argument list of a Train-tab job (the console script beside this interpreter)."""
    train = Path(sys.executable).with_name("motionlab-train")
    return [str(train), f"experiment={TARGET_EXPERIMENT}", f"init_ckpt={base}", f"data.root={target_root}", "data.toy_world=null",
            f"data.identity={identity}", f"lora.rank={rank}", f"lora.alpha={2.0 * rank}", f"model.optimizer.lr={lr}",
            f"trainer.max_steps={steps}", "trainer.max_epochs=-1", f"data.batch_size={batch}", "logger=csv", "trainer.log_every_n_steps=1",
            f"paths.log_dir={runs}", f"paths.root_dir={target_root.parent}", f"run_name={run_name}", "tags=[app,lora]"]


def base_overrides(base: str | Path) -> list[str]:
    """The base run's network and image size as overrides (from its ``.hydra/config.yaml``): the LoRA run builds the
    same architecture the base checkpoint holds."""
    import yaml

    config_file = Path(base).parents[1] / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise InputError(f"base checkpoint {base}: its run folder has no .hydra/config.yaml; choose a run's checkpoints/last.ckpt")
    config = yaml.safe_load(config_file.read_text()) or {}

    def value(v) -> str:
        if isinstance(v, list):
            return "[" + ",".join(value(x) for x in v) + "]"
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    net = ((config.get("model") or {}).get("net") or {})
    overrides = [f"model.net.{key}={value(v)}" for key, v in net.items() if key != "_target_" and not isinstance(v, dict)]
    image_size = (config.get("data") or {}).get("image_size")
    return overrides + ([f"data.image_size={image_size}"] if image_size else [])


def new_training_job(runs: Path, base: str, files: list[str], rank: int, lr: float, steps: int, batch: int,
                     profile: str | None = None, build_profile: bool = False, extra: list[str] | None = None) -> TrainingJob:
    """Stage the target (and its profile) and build the job; :meth:`TrainingJob.start` runs it. ``extra``: more
    overrides (the app's ``train_overrides``: e.g. ``data.repeats=1`` for short epochs)."""
    for name, value in (("rank", rank), ("steps", steps), ("batch", batch)):
        if int(value) < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    if not float(lr) > 0:
        raise InputError(f"learning rate must be positive, got {lr}")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    target_dir = runs / "app" / "targets" / stamp
    identity = stage_target(files, target_dir / "clips")
    chosen_profile = Path(profile) if profile else None
    if build_profile:
        from motionlab.metrics.profile import build_profile as make_profile
        from motionlab.metrics.profile import write_profile

        source = next((target_dir / "clips").iterdir())
        chosen_profile = write_profile(make_profile(source, name=identity), target_dir / "profile.json")
    run_name = f"app_{stamp}"
    command = training_command(runs, base, target_dir / "clips", identity, run_name, int(rank), float(lr), int(steps), int(batch))
    command += base_overrides(base) + list(extra or [])
    return TrainingJob(command, runs / TARGET_TASK / "runs" / run_name, target_dir / "train.log", target_dir, chosen_profile)


def latest_preview(run_dir: Path) -> Path | None:
    previews = sorted((run_dir / "previews").glob("*.gif"), key=lambda p: p.stat().st_mtime) if (run_dir / "previews").is_dir() else []
    return previews[-1] if previews else None
