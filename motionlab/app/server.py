"""The Gradio app of ``motionlab-app``: Runs (table, curves, final metrics), Sequences (player with layers and
per-frame traces), Animate (a run's checkpoint, optionally with a LoRA file or a cross-domain adapter, on an
uploaded portrait and driver) and Lip-sync (a run's U-Net on an uploaded talking-head video and audio).

Safety: it binds to the host it is given (127.0.0.1 by default); it serves files only from the runs folder and its
own job folder (Gradio refuses every other path, ``..`` included); uploads are limited in size (Gradio) and in
pixels and frames (the ``limits`` config group), and are deleted when their job ends; results stay only in the job
folder (removed when the app stops) unless the user keeps them, which copies them into ``<runs>/app/``.
"""

from __future__ import annotations

import html
import logging
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from motionlab.app.sequences import open_sequence, sequence_files
from motionlab.inference.animate import animate_files
from motionlab.utils.errors import MotionlabError, check_positive, describe, expected_error
from motionlab.utils.runs import find_runs, hidden, key_metrics, metric_curves, metric_order

log = logging.getLogger(__name__)


# the tasks (a run's model._target_) by what the app's tabs run
TASK_KINDS = {"AnimatorTask": "animation", "DescriptorTask": "animation", "LivePortraitTask": "animation", "AdapterTask": "adapter",
              "LipSyncTask": "lipsync", "SyncTask": "lipsync-critic", "Wav2LipTask": "lipsync"}


def run_kind(folder: Path) -> str | None:
    """What a run trained (:data:`TASK_KINDS`), from its Hydra config; None when the config does not say."""
    import yaml

    try:
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    target = str(((config or {}).get("model") or {}).get("_target_", "")) if isinstance(config, dict) else ""
    return TASK_KINDS.get(target.rsplit(".", 1)[-1])


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

    def __init__(self, runs: str | Path, work_dir: str | Path, device: str = "cpu"):
        self.runs = Path(runs).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.device = device
        self._sequences: dict[str, tuple[float, object]] = {}
        self._cancel = threading.Event()

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
        """Run ``work(job_folder, on_frame) -> summary`` on the uploads; returns the result's HTML player and a status
        line. Uploads are deleted when the job ends; results are copied into ``<runs>/app/`` when ``keep``."""
        missing = [name for name, path in uploads.items() if not path]
        if missing:
            raise FileNotFoundError(f"upload the {' and the '.join(missing)}")
        self._cancel.clear()
        job = Path(tempfile.mkdtemp(prefix="job_", dir=self.work_dir))
        started = time.monotonic()

        def on_frame(done: int, total: int) -> None:
            if self._cancel.is_set():
                raise JobCancelled("cancelled; nothing was written")
            if progress is not None:
                progress((done, total), desc="generating", unit="frames")

        try:
            summary = work(job, on_frame)
        finally:
            for upload in uploads.values():  # uploads never outlive their job
                Path(upload).unlink(missing_ok=True)
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
        return self._job({"portrait image": portrait, "driver video": driver}, lambda job, on_frame: animate_files(
            ckpt, portrait, driver, job / "result.mp4", device=self.device, sequence_out=job / "result.npz", lora_ckpt=lora_ckpt or None,
            adapter_ckpt=adapter or None, on_frame=on_frame), keep, progress)

    def lipsync(self, ckpt: str | None, video: str | None, audio: str | None, keep: bool, progress=None) -> tuple[str, str]:
        """Make an uploaded talking-head video (made a template here: face landmarks, crops) speak an uploaded audio
        file through a run's lip-sync U-Net."""
        from motionlab.data.talking import preprocess_talking_video
        from motionlab.inference.lipsync import lipsync_files

        if not ckpt:
            raise FileNotFoundError("choose a lip-sync U-Net checkpoint from the runs")
        ckpt = self._in_runs("checkpoint", ckpt)

        def work(job: Path, on_frame) -> dict:
            preprocess_talking_video(video, job / "template")
            return lipsync_files(ckpt, audio, str(job / "result.mp4"), template=str(job / "template"), device=self.device,
                                 sequence_out=str(job / "result.npz"), on_frame=on_frame)

        return self._job({"template video": video, "audio file": audio}, work, keep, progress)

    def cancel(self) -> str:
        self._cancel.set()
        return "cancelling..."


def _video_html(path: Path) -> str:
    # shown at least 384 px wide: results of small networks stay visible, pixels unsmoothed
    return (f'<video id="result-video" src="/gradio_api/file={html.escape(str(path))}" controls autoplay loop muted '
            'style="min-width: 384px; max-width: 100%; image-rendering: pixelated"></video>')


def build_app(viewer: Viewer):
    """The Gradio Blocks of the viewer."""
    import gradio as gr

    with gr.Blocks(title="motionlab") as app:
        gr.Markdown(f"# motionlab\nRuns under `{viewer.runs}`")
        with gr.Tab("Runs", id="runs"):
            refresh = gr.Button("Refresh", size="sm")
            table = gr.Dataframe(label="runs", interactive=False, elem_id="runs-table", wrap=True)
            selected = gr.CheckboxGroup(label="compare runs", elem_id="compare-runs")
            metric = gr.Dropdown(label="metric", choices=[], allow_custom_value=True, elem_id="compare-metric")
            curves = gr.LinePlot(x="step", y="value", color="run", label="curves (logger=csv)", elem_id="curves")
            final = gr.Dataframe(label="final metrics", headers=["metric"], interactive=False, elem_id="final-metrics")

            def list_runs():
                frame, names = viewer.runs_table()
                return frame, gr.update(choices=names, value=[])

            def show(selected_runs, metric_name):
                frame, available, final_frame = viewer.compare(selected_runs, metric_name)
                if metric_name not in available and available:
                    metric_name = next((m for m in available if m.startswith("val/")), available[0])
                    frame, _, _ = viewer.compare(selected_runs, metric_name)
                return frame, gr.update(choices=available, value=metric_name), final_frame

            refresh.click(list_runs, outputs=[table, selected])
            app.load(list_runs, outputs=[table, selected])
            for trigger in (selected.change, metric.input):
                trigger(show, inputs=[selected, metric], outputs=[curves, metric, final])

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
            """The job's player and status, or its error as a message; the uploads are cleared either way (their
            files are deleted when the job ends)."""
            uploads = [a for a in args if isinstance(a, str) and viewer.work_dir in Path(a).resolve().parents]
            try:
                player, line = method(*args, progress=progress)
            except Exception as error:
                message = _message(error)
                for upload in uploads:  # the user knows their files by name
                    message = message.replace(str(upload), Path(upload).name)
                gr.Warning(message)
                return "", f"**Error:** {html.escape(message)}", None, None
            return player, line, None, None

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
            job = run.click(animate, inputs=[checkpoint, lora, adapter, portrait, driver, keep], outputs=[result, status, portrait, driver],
                            concurrency_limit=1)
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
            speech_job = speak.click(lipsync, inputs=[unet, template, speech, keep_speech], outputs=[speech_result, speech_status, template, speech],
                                     concurrency_limit=1)
            stop_speech.click(viewer.cancel, outputs=speech_status, cancels=[speech_job])
    return app


def serve(runs: str | Path, host: str = "127.0.0.1", port: int = 7860, max_upload_mb: int = 50, device: str = "cpu",
          block: bool = True):
    """Start the app; returns ``(app, url, work_dir)`` (``block=False``: the server runs in a thread; ``app.close()``
    stops it). The job folder is deleted when the app stops."""
    import os

    check_positive(port=port, max_upload_mb=max_upload_mb)
    runs = Path(runs)
    if not runs.is_dir():
        raise FileNotFoundError(f"runs={runs} is not a folder; give the logs folder of motionlab-train (e.g. runs=logs)")
    work_dir = Path(tempfile.mkdtemp(prefix="motionlab-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work_dir / "gradio")  # uploads and shown images land in the job folder, not /tmp/gradio
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    viewer = Viewer(runs, work_dir, device)
    app = build_app(viewer)
    close = app.close

    def close_and_clean(*args, **kwargs):
        close(*args, **kwargs)
        shutil.rmtree(work_dir, ignore_errors=True)

    app.close = close_and_clean
    try:
        _, url, _ = app.launch(server_name=host, server_port=port, allowed_paths=[str(viewer.runs), str(work_dir)],
                               max_file_size=f"{max_upload_mb}mb", prevent_thread_lock=not block, quiet=not block, show_error=True,
                               footer_links=[])
    finally:
        if block:
            shutil.rmtree(work_dir, ignore_errors=True)
    return app, url, work_dir
