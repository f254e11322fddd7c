"""The Gradio app of ``motionlab-app``: Runs (table, curves, final metrics), Sequences (player with layers and
per-frame traces), Animate (a run's checkpoint, optionally with a LoRA file or a cross-domain adapter, on an
uploaded portrait and driver; a row of examples from the embedded toy world or the ``examples=`` folder), Lip-sync
(a run's U-Net on an uploaded talking-head video and audio) and Train (LoRA on a limited-data target:
:mod:`motionlab.app.training`).

Safety: it binds to the host it is given (127.0.0.1 by default); it serves files only from the runs folder and its
own job folder (Gradio refuses every other path, ``..`` included); uploads are limited in size (Gradio) and in
pixels and frames (the ``limits`` config group); a job works on copies of the uploads, deleted when it ends, and the
uploads stay in the app's folder until replaced or the app stops; results stay only in the job folder (removed when
the app stops) unless the user keeps them, which copies them into ``<runs>/app/``. Training jobs run
``motionlab-train`` with an argument list, writing only under the runs folder.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from motionlab.app.sequences import open_sequence, sequence_files
from motionlab.inference.animate import animate_files
from motionlab.utils.errors import InputError, MotionlabError, check_positive, describe, expected_error
from motionlab.utils.runs import find_runs, hidden, key_metrics, metric_curves, metric_order

log = logging.getLogger(__name__)


# the tasks (a run's model._target_) by what the app's tabs run
TASK_KINDS = {"AnimatorTask": "animation", "DescriptorTask": "animation", "LivePortraitTask": "animation", "AdapterTask": "adapter",
              "LipSyncTask": "lipsync", "SyncTask": "lipsync-critic", "Wav2LipTask": "lipsync"}


def run_task(folder: Path) -> str | None:
    """The task class a run trained (``AnimatorTask`` ...), from its Hydra config; None when the config does not say."""
    import yaml

    try:
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    target = str(((config or {}).get("model") or {}).get("_target_", "")) if isinstance(config, dict) else ""
    return target.rsplit(".", 1)[-1] or None


def run_kind(folder: Path) -> str | None:
    """What a run trained (:data:`TASK_KINDS`), from its Hydra config; None when the config does not say."""
    return TASK_KINDS.get(run_task(folder) or "")


class JobCancelled(MotionlabError):
    """The user pressed Cancel; the job's outputs were not written."""


def _message(error: Exception) -> str:
    """What an app user sees of an error: the expected error's one line, or the exception's type and text for a bug
    (its traceback goes to the server log), never a traceback."""
    cause = expected_error(error)
    if cause is not None:
        return describe(cause)
    log.exception("unexpected error in motionlab-app")
    return f"unexpected {type(error).__name__}: {error} (the traceback is in the server log)"


def _error(error: Exception):
    import gradio as gr

    return gr.Error(_message(error), print_exception=False)


class Viewer:
    """The app's state: the runs root, the job folder, the sequences it has open."""

    def __init__(self, runs: str | Path, work_dir: str | Path, device: str = "cpu", train_overrides: list[str] | None = None):
        self.runs = Path(runs).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.device = device
        self.train_overrides = list(train_overrides or [])
        self._sequences: dict[str, tuple[float, object]] = {}
        self._cancel = threading.Event()
        self._training = None

    # Runs
    def runs_table(self):
        import pandas as pd

        records = find_runs(self.runs)
        names = key_metrics(records)
        frame = pd.DataFrame([r.row(names) for r in records], columns=["run", "experiment", "tags", "started", "status", "sweep", *names])
        return frame, [r.name for r in records]

    def compare(self, selected: list[str], metric: str | None):
        """Curves of ``metric`` for the selected runs, the metrics those runs log, and their final metrics."""
        import pandas as pd

        rows, available = [], set()
        finals = {}
        records = {r.name: r for r in find_runs(self.runs)}
        for name in selected or []:
            if name not in records:
                continue
            curves = metric_curves(records[name].folder)
            available |= set(curves)
            rows += [{"step": step, "value": value, "run": name} for step, value in curves.get(metric, [])]
            finals[name] = records[name].metrics
        final_names = sorted({key for metrics in finals.values() for key in metrics}, key=metric_order)
        final = pd.DataFrame([[key, *(float(f"{finals[run][key]:.4g}") if key in finals[run] else np.nan for run in finals)] for key in final_names],
                             columns=["metric", *finals])
        return pd.DataFrame(rows, columns=["step", "value", "run"]), sorted(available), final

    @staticmethod
    def has_lone_points(curves) -> bool:
        """Whether some run has a single point of the metric: a line plot draws nothing for it, so the app shows
        points instead."""
        return bool(len(curves)) and int(curves.groupby("run").size().min()) < 2

    # Sequences
    def sequence_choices(self) -> list[tuple[str, str]]:
        return [(str(path.relative_to(self.runs)), str(path)) for path in sequence_files(self.runs)]

    def sequence(self, path: str):
        resolved = Path(self._in_runs("sequence", path)).resolve()
        stamp = resolved.stat().st_mtime
        cached = self._sequences.get(str(resolved))
        if cached is None or cached[0] != stamp:
            self._sequences[str(resolved)] = cached = (stamp, open_sequence(resolved))
        return cached[1]

    def traces_frame(self, path: str):
        import pandas as pd

        sequence = self.sequence(path)
        rows = [{"frame": i, "value": float(v), "metric": name} for name, values in sequence.traces.items() for i, v in enumerate(values) if np.isfinite(v)]
        return pd.DataFrame(rows, columns=["frame", "value", "metric"])

    # Animate / lip-sync
    def _files(self, pattern: str) -> list[tuple[str, str]]:
        found = sorted(self.runs.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        return [(str(p.relative_to(self.runs)), str(p)) for p in found if not hidden(p, self.runs)]

    def checkpoints(self, kind: str | None = None) -> list[tuple[str, str]]:
        """The runs' last.ckpt files, only those of ``kind`` (:data:`TASK_KINDS`: animation, adapter, lipsync) when
        given: a tab lists what it can run. A run whose config does not say its task is listed everywhere."""
        found = self._files("**/checkpoints/last.ckpt")
        return found if kind is None else [(label, path) for label, path in found if run_kind(Path(path).parents[1]) in (kind, None)]

    def lora_files(self) -> list[tuple[str, str]]:
        # a run's pretrained/model.safetensors holds a whole model, not adapters
        return [(label, path) for label, path in self._files("**/*.safetensors") if not (Path(path).parent / "config.json").is_file()]

    def _in_runs(self, key: str, path: str | None) -> str | None:
        if path and self.runs not in Path(path).resolve().parents:
            raise FileNotFoundError(f"{key} {path} is not in the runs folder")
        return path

    def _job(self, uploads: dict[str, str | None], work, keep: bool, progress=None) -> tuple[str, str]:
        """Run ``work(job_folder, on_frame, copies) -> summary`` on copies of the uploads (``copies``: upload path -> its
        copy); returns the result's HTML player and a status line. The copies are deleted when the job ends; results
        are copied into ``<runs>/app/`` when ``keep``."""
        missing = [name for name, path in uploads.items() if not path]
        if missing:
            raise FileNotFoundError(f"upload the {' and the '.join(missing)}")
        self._cancel.clear()
        job = Path(tempfile.mkdtemp(prefix="job_", dir=self.work_dir))
        started = time.monotonic()
        # the job works on copies (deleted when it ends): the uploads stay for the next job until replaced
        copies = {}
        for index, path in enumerate(uploads.values()):  # under the upload's own name: messages name the user's file
            folder = job / "uploads" / str(index)
            folder.mkdir(parents=True)
            copies[path] = str(shutil.copy2(path, folder / Path(path).name))

        def on_frame(done: int, total: int) -> None:
            if self._cancel.is_set():
                raise JobCancelled("cancelled; nothing was written")
            if progress is not None:
                progress((done, total), desc="generating", unit="frames")

        try:
            summary = work(job, on_frame, copies)
        finally:
            for copy in copies.values():
                Path(copy).unlink(missing_ok=True)
        results = [job / name for name in ("result.mp4", "result.npz") if (job / name).is_file()]
        status = f"{summary['frames']} frames in {time.monotonic() - started:.1f} s"
        if keep:
            kept = self.runs / "app" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
            kept.mkdir(parents=True)
            results = [Path(shutil.copy2(path, kept / path.name)) for path in results]
            status += f"; kept in {kept.relative_to(self.runs)}"
        return _video_html(results[0]), status

    def animate(self, ckpt: str | None, portrait: str | None, driver: str | None, keep: bool, lora_ckpt: str | None = None,
                adapter: str | None = None, progress=None) -> tuple[str, str]:
        """Animate an uploaded portrait with an uploaded driver through a run's checkpoint (with a LoRA file, or an
        adapter checkpoint for a cross-domain driver)."""
        if not ckpt:
            raise FileNotFoundError("choose a checkpoint from the runs")
        ckpt, lora_ckpt, adapter = (self._in_runs(k, v) for k, v in (("checkpoint", ckpt), ("LoRA file", lora_ckpt), ("adapter", adapter)))
        return self._job({"portrait image": portrait, "driver video": driver}, lambda job, on_frame, copies: animate_files(
            ckpt, copies[portrait], copies[driver], job / "result.mp4", device=self.device, sequence_out=job / "result.npz",
            lora_ckpt=lora_ckpt or None, adapter_ckpt=adapter or None, on_frame=on_frame), keep, progress)

    def lipsync(self, ckpt: str | None, video: str | None, audio: str | None, keep: bool, progress=None) -> tuple[str, str]:
        """Make an uploaded talking-head video (made a template here: face landmarks, crops) speak an uploaded audio
        file through a run's lip-sync U-Net."""
        from motionlab.data.talking import preprocess_talking_video
        from motionlab.inference.lipsync import lipsync_files

        if not ckpt:
            raise FileNotFoundError("choose a lip-sync U-Net checkpoint from the runs")
        ckpt = self._in_runs("checkpoint", ckpt)

        def work(job: Path, on_frame, copies: dict[str, str]) -> dict:
            preprocess_talking_video(copies[video], job / "template")
            return lipsync_files(ckpt, copies[audio], str(job / "result.mp4"), template=str(job / "template"), device=self.device,
                                 sequence_out=str(job / "result.npz"), on_frame=on_frame)

        return self._job({"template video": video, "audio file": audio}, work, keep, progress)

    def cancel(self) -> str:
        self._cancel.set()
        return "cancelling..."

    # Train
    def train_bases(self) -> list[tuple[str, str]]:
        """The Animator v1 runs a target LoRA can start from (their last.ckpt)."""
        return [(label, path) for label, path in self.checkpoints("animation") if run_task(Path(path).parents[1]) == "AnimatorTask"]

    def profiles(self) -> list[tuple[str, str]]:
        """Identity profiles in the runs folder (``motionlab-data profile out=<runs>/..._profile.json``)."""
        return self._files("**/*profile*.json")

    def start_training(self, base: str | None, profile: str | None, build_profile: bool, files: list[str] | None, rank, lr, steps, batch) -> str:
        """Start a Train-tab job (:func:`motionlab.app.training.new_training_job`); returns its status line."""
        from motionlab.app.training import new_training_job

        if self._training is not None and self._training.poll() == "running":
            raise InputError("a training job is running: cancel it first")
        if not base:
            raise FileNotFoundError("choose a base run (an Animator v1 run's last.ckpt)")
        base, profile = self._in_runs("base checkpoint", base), self._in_runs("profile", profile)
        self._training = new_training_job(self.runs, base, list(files or []), rank, lr, steps, batch, profile or None, bool(build_profile),
                                          self.train_overrides)
        self._training.start()
        return self.training_status()[0]

    def resume_training(self) -> str:
        """Run the last job's command again: it continues from its run folder's last.ckpt."""
        job = self._training
        if job is None:
            raise InputError("no training job to resume: start one")
        if job.poll() == "running":
            raise InputError("the training job is still running")
        if not (job.run_dir / "checkpoints" / "last.ckpt").is_file():
            raise InputError("the job wrote no checkpoint before it stopped: start it again")
        job.start()
        return self.training_status()[0]

    def cancel_training(self) -> str:
        if self._training is None:
            return "no training job"
        self._training.cancel()
        return self.training_status()[0]

    def training_status(self):
        """``(status line, loss curve frame, latest preview or None, running)`` of the current training job."""
        import pandas as pd

        from motionlab.app.training import latest_preview

        job = self._training
        if job is None:
            return "", pd.DataFrame(columns=["step", "value", "run"]), None, False
        state = job.poll()
        curves = metric_curves(job.run_dir)
        curve = pd.DataFrame([{"step": step, "value": value, "run": job.run_dir.name} for step, value in curves.get("train/loss", [])],
                             columns=["step", "value", "run"])
        step = max((step for points in curves.values() for step, _ in points), default=0)
        last = (job.run_dir / "checkpoints" / "last.ckpt").is_file()
        line = f"**{state}**: run `{job.run_dir.relative_to(self.runs)}`, step {step}" + (", last.ckpt saved" if last else "")
        if job.profile is not None:
            line += f"; identity profile `{job.profile.name}`"
        if state == "finished" and job.lora_file is not None:
            line += f"; LoRA file `{job.lora_file.relative_to(self.runs)}` (listed in the Animate tab)"
        elif state == "cancelled":
            line += "; Resume continues from last.ckpt" if last else "; no checkpoint was written yet"
        elif state == "failed":
            line += f"; the log ends:\n```\n{job.log_tail()}\n```"
        return line, curve, latest_preview(job.run_dir), state == "running"


def _video_html(path: Path) -> str:
    # shown at least 384 px wide: results of small networks stay visible, pixels unsmoothed
    return (f'<video id="result-video" src="/gradio_api/file={html.escape(str(path))}" controls autoplay loop muted '
            'style="min-width: 384px; max-width: 100%; image-rendering: pixelated"></video>')


EXAMPLE_IMAGES, EXAMPLE_VIDEOS = (".png", ".jpg", ".jpeg"), (".mp4", ".mov", ".avi", ".mkv", ".webm")


def example_inputs(work_dir: Path, folder: str | Path | None = None, rows: int = 3) -> tuple[list[list[str]], str]:
    """The Animate tab's example (portrait, driver) rows and where they come from: the images of ``folder`` paired in
    turn with its videos, or, without one, a small world of the embedded toy generator (64 px characters, seed 7)
    written into the app's folder, each portrait with another identity's clip as an mp4."""
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"examples={folder} is not a folder; give a folder of images and videos")
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXAMPLE_IMAGES)
        videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXAMPLE_VIDEOS)
        if not images or not videos:
            raise InputError(f"examples={folder} needs images ({', '.join(EXAMPLE_IMAGES)}) and videos ({', '.join(EXAMPLE_VIDEOS)}); "
                             f"it holds {len(images)} and {len(videos)}")
        return [[str(image), str(videos[i % len(videos)])] for i, image in enumerate(images[:rows])], str(folder)
    from PIL import Image

    from motionlab.data.synthetic import ToyWorldSpec, generate_toy_world
    from motionlab.data.video_io import write_video

    world = generate_toy_world(work_dir / "examples" / "world", ToyWorldSpec(identities=2 * rows, frames=24, size=64, seed=7))
    found = []
    for index in range(rows):
        portrait, clip = world / f"id_{2 * index:04d}.png", world / f"id_{2 * index + 1:04d}_video"
        frames = [np.asarray(Image.open(frame).convert("RGB")) for frame in sorted(clip.glob("*.png"))]
        found.append([str(portrait), str(write_video(work_dir / "examples" / f"driver_{index}.mp4", frames, fps=25.0))])
    return found, "the embedded toy world (64 px characters)"


def build_app(viewer: Viewer, examples: list[list[str]] | None = None, examples_source: str = ""):
    """The Gradio Blocks of the viewer (``examples``: the Animate tab's (portrait, driver) rows)."""
    import gradio as gr

    with gr.Blocks(title="motionlab") as app:
        gr.Markdown(f"# motionlab\nRuns under `{viewer.runs}`")
        with gr.Tab("Runs", id="runs"):
            refresh = gr.Button("Refresh", size="sm")
            # cells keep one line and the table scrolls sideways, the run name pinned: every column stays reachable
            table = gr.Dataframe(label="runs", interactive=False, elem_id="runs-table", wrap=False, pinned_columns=1)
            selected = gr.CheckboxGroup(label="compare runs", elem_id="compare-runs")
            metric = gr.Dropdown(label="metric", choices=[], allow_custom_value=True, elem_id="compare-metric")
            curves = gr.LinePlot(x="step", y="value", color="run", label="curves (logger=csv)", elem_id="curves")
            # a run with one value of the metric draws no line: the values are shown as points then
            points = gr.ScatterPlot(x="step", y="value", color="run", label="values (logger=csv; a run has one point)", elem_id="curve-points",
                                    visible=False)
            final = gr.Dataframe(label="final metrics", headers=["metric"], interactive=False, elem_id="final-metrics")

            def list_runs():
                frame, names = viewer.runs_table()
                return frame, gr.update(choices=names, value=[])

            def show(selected_runs, metric_name):
                frame, available, final_frame = viewer.compare(selected_runs, metric_name)
                if metric_name not in available and available:
                    metric_name = next((m for m in available if m.startswith("val/")), available[0])
                    frame, _, _ = viewer.compare(selected_runs, metric_name)
                lone = viewer.has_lone_points(frame)
                return (gr.update(value=frame, visible=not lone), gr.update(value=frame, visible=lone), gr.update(choices=available, value=metric_name),
                        final_frame)

            refresh.click(list_runs, outputs=[table, selected])
            app.load(list_runs, outputs=[table, selected])
            for trigger in (selected.change, metric.input):
                trigger(show, inputs=[selected, metric], outputs=[curves, points, metric, final])

        with gr.Tab("Sequences", id="sequences"):
            with gr.Row():
                chosen = gr.Dropdown(label="sequence", choices=[], elem_id="sequence-choice", scale=4)
                reload = gr.Button("Refresh", size="sm", scale=1)
            layers = gr.CheckboxGroup(label="layers", choices=[], elem_id="sequence-layers")
            frame_index = gr.Slider(0, 1, step=1, value=0, label="frame", elem_id="sequence-frame")
            with gr.Row():
                play = gr.Button("Play", size="sm", elem_id="sequence-play")
                pause = gr.Button("Pause", size="sm")
            image = gr.Image(label="portrait | driver | generated", type="numpy", interactive=False, elem_id="sequence-image", format="png")
            traces = gr.LinePlot(x="frame", y="value", color="metric", label="per-frame traces", elem_id="sequence-traces")
            timer = gr.Timer(0.1, active=False)

            def list_sequences():
                return gr.update(choices=viewer.sequence_choices())

            def open_chosen(path):
                if not path:
                    return gr.update(), gr.update(), None, None, gr.update()
                try:
                    sequence = viewer.sequence(path)
                except Exception as error:
                    raise _error(error) from error
                return (gr.update(choices=sorted(sequence.layers), value=[]), gr.update(maximum=max(1, len(sequence) - 1), value=0),
                        sequence.render(0), viewer.traces_frame(path), gr.Timer(1.0 / max(sequence.fps, 1.0), active=False))

            def render(path, index, shown):
                if not path:
                    return None
                try:
                    return viewer.sequence(path).render(int(index), list(shown or []))
                except Exception as error:
                    raise _error(error) from error

            def tick(path, index):
                return 0 if not path else (int(index) + 1) % len(viewer.sequence(path))

            reload.click(list_sequences, outputs=chosen)
            app.load(list_sequences, outputs=chosen)
            chosen.change(open_chosen, inputs=chosen, outputs=[layers, frame_index, image, traces, timer])
            for trigger in (frame_index.change, layers.change):
                trigger(render, inputs=[chosen, frame_index, layers], outputs=image, show_progress="hidden")
            play.click(lambda: gr.Timer(active=True), outputs=timer)
            pause.click(lambda: gr.Timer(active=False), outputs=timer)
            timer.tick(tick, inputs=[chosen, frame_index], outputs=frame_index, show_progress="hidden")

        def run_job(method, *args, progress):
            """The job's player and status, or its error as a message (naming the upload the user knows, not its copy)."""
            uploads = [a for a in args if isinstance(a, str) and viewer.work_dir in Path(a).resolve().parents]
            try:
                player, line = method(*args, progress=progress)
            except Exception as error:
                message = _message(error)
                for upload in uploads:
                    message = message.replace(str(upload), Path(upload).name)
                message = re.sub(r"\S*/uploads/\d+/", "", message)  # the job's copy: the file the user uploaded
                gr.Warning(message)
                return "", f"**Error:** {html.escape(message)}"
            return player, line

        with gr.Tab("Animate", id="animate"):
            checkpoint = gr.Dropdown(label="checkpoint (a run's last.ckpt)", choices=[], elem_id="animate-ckpt")
            with gr.Row():
                lora = gr.Dropdown(label="LoRA file (optional)", choices=[], value=None, elem_id="animate-lora")
                adapter = gr.Dropdown(label="adapter checkpoint (optional: a human video drives the descriptor model)", choices=[],
                                      value=None, elem_id="animate-adapter")
            with gr.Row():
                portrait = gr.File(label="portrait (image)", file_types=["image"], elem_id="animate-portrait")
                driver = gr.File(label="driver (video)", file_types=["video"], elem_id="animate-driver")
            keep = gr.Checkbox(label="keep the result (copied into <runs>/app/)", value=False)
            with gr.Row():
                run = gr.Button("Animate", variant="primary", elem_id="animate-run")
                stop = gr.Button("Cancel", elem_id="animate-cancel")
            status = gr.Markdown(elem_id="animate-status")
            result = gr.HTML(elem_id="animate-result")

            def animate(ckpt, lora_ckpt, adapter_ckpt, portrait_file, driver_file, keep_result, progress=gr.Progress()):
                return run_job(lambda *a, progress: viewer.animate(ckpt, *a, keep_result, lora_ckpt, adapter_ckpt, progress=progress),
                               portrait_file, driver_file, progress=progress)

            def list_files():
                return (gr.update(choices=viewer.checkpoints("animation")), gr.update(choices=viewer.lora_files()),
                        gr.update(choices=viewer.checkpoints("adapter")))

            app.load(list_files, outputs=[checkpoint, lora, adapter])
            if examples:
                gr.Examples(examples=examples, inputs=[portrait, driver], label=f"examples: {examples_source}", elem_id="animate-examples")
            job = run.click(animate, inputs=[checkpoint, lora, adapter, portrait, driver, keep], outputs=[result, status], concurrency_limit=1)
            stop.click(viewer.cancel, outputs=status, cancels=[job])

        with gr.Tab("Lip-sync", id="lipsync"):
            unet = gr.Dropdown(label="lip-sync U-Net checkpoint (a run's last.ckpt)", choices=[], elem_id="lipsync-ckpt")
            with gr.Row():
                template = gr.File(label="template (a talking-head video)", file_types=["video"], elem_id="lipsync-template")
                speech = gr.File(label="audio", file_types=["audio"], elem_id="lipsync-audio")
            keep_speech = gr.Checkbox(label="keep the result (copied into <runs>/app/)", value=False)
            with gr.Row():
                speak = gr.Button("Lip-sync", variant="primary", elem_id="lipsync-run")
                stop_speech = gr.Button("Cancel", elem_id="lipsync-cancel")
            speech_status = gr.Markdown(elem_id="lipsync-status")
            speech_result = gr.HTML(elem_id="lipsync-result")

            def lipsync(ckpt, video, audio, keep_result, progress=gr.Progress()):
                return run_job(lambda *a, progress: viewer.lipsync(ckpt, *a, keep_result, progress=progress), video, audio, progress=progress)

            app.load(lambda: gr.update(choices=viewer.checkpoints("lipsync")), outputs=unet)
            speech_job = speak.click(lipsync, inputs=[unet, template, speech, keep_speech], outputs=[speech_result, speech_status], concurrency_limit=1)
            stop_speech.click(viewer.cancel, outputs=speech_status, cancels=[speech_job])

        with gr.Tab("Train", id="train"):
            gr.Markdown("LoRA on a limited-data target: adapt an Animator v1 run to one identity from a short clip or a few images "
                        "(`motionlab-train experiment=lora_animator_target`, in a subprocess). Models trained here are 64-px CPU toys.")
            base = gr.Dropdown(label="base (an Animator v1 run's last.ckpt)", choices=[], elem_id="train-base")
            with gr.Row():
                profile = gr.Dropdown(label="identity profile (optional: *profile*.json in the runs)", choices=[], value=None, elem_id="train-profile")
                build_profile = gr.Checkbox(label="build a profile from the target", value=False, elem_id="train-build-profile")
            target = gr.File(label="target (one video, or images of it)", file_count="multiple", elem_id="train-target")
            with gr.Row():
                rank = gr.Number(4, label="rank", precision=0, minimum=1, elem_id="train-rank")
                rate = gr.Number(0.003, label="learning rate", elem_id="train-lr")
                steps = gr.Number(100, label="steps", precision=0, minimum=1, elem_id="train-steps")
                batch = gr.Number(16, label="batch", precision=0, minimum=1, elem_id="train-batch")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop_training = gr.Button("Cancel", elem_id="train-cancel")
                resume = gr.Button("Resume", elem_id="train-resume")
            train_status = gr.Markdown(elem_id="train-status")
            loss = gr.LinePlot(x="step", y="value", color="run", label="train/loss", elem_id="train-loss")
            preview = gr.Image(label="latest validation preview", type="filepath", interactive=False, elem_id="train-preview")
            poll = gr.Timer(1.0, active=False)

            def guarded(action):
                def run(*args):
                    try:
                        line = action(*args)
                    except Exception as error:
                        gr.Warning(_message(error))
                        return f"**Error:** {html.escape(_message(error))}", gr.Timer(active=False)
                    return line, gr.Timer(active=True)
                return run

            def refresh_training():
                line, curve, shown, running = viewer.training_status()
                return line, curve, shown, gr.Timer(active=running), gr.update(choices=viewer.lora_files())

            app.load(lambda: (gr.update(choices=viewer.train_bases()), gr.update(choices=viewer.profiles())), outputs=[base, profile])
            start.click(guarded(viewer.start_training), inputs=[base, profile, build_profile, target, rank, rate, steps, batch],
                        outputs=[train_status, poll])
            resume.click(guarded(viewer.resume_training), outputs=[train_status, poll])
            stop_training.click(guarded(viewer.cancel_training), outputs=[train_status, poll])
            poll.tick(refresh_training, outputs=[train_status, loss, preview, poll, lora], show_progress="hidden")
    return app


def serve(runs: str | Path, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = 50, device: str = "cpu",
          block: bool = True, examples: str | Path | None = None, train_overrides: list[str] | None = None):
    """Start the app; returns ``(app, url, work_dir)`` (``block=False``: the server runs in a thread; ``app.close()``
    stops it). The job folder is deleted when the app stops. ``examples``: a folder of images and videos for the
    Animate tab's example row (default: the embedded toy world); ``train_overrides``: more overrides for every Train-tab
    job."""
    import os

    check_positive(port=port, max_upload_mb=max_upload_mb)
    runs = Path(runs)
    if not runs.is_dir():
        raise FileNotFoundError(f"runs={runs} is not a folder; give the logs folder of motionlab-train (e.g. runs=logs)")
    work_dir = Path(tempfile.mkdtemp(prefix="motionlab-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir / "gradio")  # uploads and shown images land in the job folder, not /tmp/gradio
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    viewer = Viewer(runs, work_dir, device, train_overrides)
    rows, source = example_inputs(work_dir, examples)
    app = build_app(viewer, rows, source)
    close = app.close

    def close_and_clean(*args, **kwargs):
        close(*args, **kwargs)
        shutil.rmtree(work_dir, ignore_errors=True)

    app.close = close_and_clean
    try:
        allowed = [str(viewer.runs), str(work_dir)] + ([str(Path(examples).resolve())] if examples is not None else [])
        _, url, _ = app.launch(server_name=host, server_port=port, allowed_paths=allowed,
                               max_file_size=f"{max_upload_mb}mb", prevent_thread_lock=not block, quiet=not block, show_error=True,
                               footer_links=[])
    finally:
        if block:
            shutil.rmtree(work_dir, ignore_errors=True)
    return app, url, work_dir
