"""motionlab-app: the run index, sequence files and traces it shows, and the app itself in a real browser (Playwright
driving Debian's chromium) over a run folder trained here."""

from __future__ import annotations

import io
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import count_video_frames, face_video, run_command, tiny_overrides
from PIL import Image

from motionlab.app.sequences import open_sequence, sequence_files
from motionlab.inference.animate import animate_files
from motionlab.inference.sequence import SequenceError, build_sequence, read_sequence, write_sequence
from motionlab.metrics.traces import frame_traces
from motionlab.utils.runs import find_runs, key_metrics, metric_curves


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory) -> dict[str, Path]:
    """A runs folder as motionlab-train writes it (Hydra's folder, CSV curves, previews, checkpoints) with a
    sequence animated from its checkpoint, and a stopped run (a checkpoint, no final metrics)."""
    root = tmp_path_factory.mktemp("app")
    overrides = [o for o in tiny_overrides(root, "descriptor_quick") if not o.startswith("callbacks.")]
    code, out, err = run_command(["motionlab-train", "experiment=descriptor_quick", "logger=csv", "trainer.max_epochs=2",
                                  "trainer.limit_train_batches=2", "tags=[demo]", *overrides])
    assert code == 0, err[-3000:]
    run = next((root / "logs" / "descriptor_quick" / "runs").iterdir())
    world = next((root / ".cache").glob("toy_world_*"))
    animate_files(run / "checkpoints" / "last.ckpt", world / "id_0000.png", world / "id_0001_video", run / "animate" / "out.mp4",
                  sequence_out=run / "animate" / "seq.npz")
    stopped = root / "logs" / "descriptor_quick" / "runs" / "2026-01-01_00-00-00_1"
    (stopped / "checkpoints").mkdir(parents=True)
    shutil.copytree(run / ".hydra", stopped / ".hydra")  # as a run killed before its end leaves it
    shutil.copy(run / "checkpoints" / "last.ckpt", stopped / "checkpoints" / "last.ckpt")
    sweep = root / "logs" / "descriptor_quick" / "multiruns" / "2026-01-02_00-00-00_2"  # Hydra's multirun layout
    shutil.copytree(run / ".hydra", sweep / "0" / ".hydra")
    shutil.copy(run / "metrics.json", sweep / "0" / "metrics.json")
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    # a run that failed after one validation: one point per curve
    failed = root / "logs" / "descriptor_quick" / "runs" / "2026-01-03_00-00-00_3"
    shutil.copytree(run / ".hydra", failed / ".hydra")
    (failed / "csv").mkdir()
    (failed / "csv" / "metrics.csv").write_text("epoch,step,val/akd\n0,7,2.5\n")
    (failed / "run_status.json").write_text('{"status": "failed", "error": "RuntimeError: out of memory"}\n')
    # an Animator v1 run: the base of the Train tab's LoRA
    code, out, err = run_command(["motionlab-train", "experiment=quickstart", "logger=csv", "trainer.max_epochs=1", *tiny_overrides(root)])
    assert code == 0, err[-3000:]
    animator = next((root / "logs" / "quickstart" / "runs").iterdir())
    return {"root": root, "runs": root / "logs", "run": run, "world": world, "failed": failed, "animator": animator}


def test_frame_traces_known_values():
    """Driver and generated changing alike: temporal difference 0; frames of the portrait's colour: no drift;
    keypoints 3 px apart: motion agreement 3."""
    torch.manual_seed(0)
    portrait = torch.full((3, 8, 8), 0.5)
    driver = torch.rand(5, 3, 8, 8)
    generated = portrait.expand(5, -1, -1, -1).clone()
    traces = frame_traces(portrait, generated, generated, torch.zeros(5, 2, 2), torch.tensor([3.0, 0.0]).expand(5, 2, 2))
    assert np.isnan(traces["temporal_difference"][0]) and np.allclose(traces["temporal_difference"][1:], 0)
    assert np.allclose(traces["colour_drift"], 0, atol=1e-6) and np.allclose(traces["motion_agreement"], 3.0)
    moving = frame_traces(portrait, driver, generated)
    assert (moving["temporal_difference"][1:] > 0.1).all() and "motion_agreement" not in moving
    with pytest.raises(ValueError, match="generated must have shape"):
        frame_traces(portrait, driver, generated[0])


def test_sequence_file_round_trip_layers_and_bad_files(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    points = np.tile(np.array([[[2.0, 3.0], [12.0, 9.0]]], np.float32), (4, 1, 1))
    sequence = build_sequence(frames[0], frames, frames, 25.0, {"driver_keypoints": ("driver", points), "generated_keypoints": ("generated", points)})
    read = read_sequence(write_sequence(tmp_path / "s.npz", sequence))
    assert len(read) == 4 and read.fps == 25.0 and np.array_equal(read.generated, frames)
    assert read.layers["driver_keypoints"][0] == "driver" and np.array_equal(read.layers["generated_keypoints"][1], points)
    assert np.allclose(read.traces["motion_agreement"], 0) and np.allclose(read.traces["temporal_difference"][1:], 0)
    plain, drawn = read.render(1, size=64), read.render(1, ["driver_keypoints"], size=64)
    assert plain.shape == (64, 192, 3)
    changed = np.argwhere((plain != drawn).any(axis=-1))
    assert len(changed) and (changed[:, 1] >= 64).all() and (changed[:, 1] < 128).all()  # only the driver panel
    assert tuple(drawn[14, 64 + 10]) == (230, 25, 75)  # point 0 at (2, 3) px, scaled x4, in keypoint colour 0
    with pytest.raises(SequenceError, match="unknown layers"):
        read.render(0, ["landmarks"])
    (tmp_path / "text.npz").write_text("not a sequence\n")
    np.savez(tmp_path / "other.npz", portrait=frames[0])
    np.savez(tmp_path / "objects.npz", format=np.array([{"code": "x"}], dtype=object))
    for name, message in (("text.npz", "cannot be read"), ("other.npz", "is not a motionlab sequence"), ("objects.npz", "cannot be read")):
        with pytest.raises(SequenceError, match=message):
            read_sequence(tmp_path / name)


def test_run_index(app_runs):
    records = {r.name: r for r in find_runs(app_runs["runs"])}
    run = records[str(app_runs["run"].relative_to(app_runs["runs"]))]
    assert run.experiment == "descriptor_quick" and run.tags == ["demo"] and run.status == "finished" and "val/akd" in run.metrics
    assert records["descriptor_quick/runs/2026-01-01_00-00-00_1"].status == "stopped"
    assert run.sweep is None and records["descriptor_quick/multiruns/2026-01-02_00-00-00_2/0"].sweep == "descriptor_quick/multiruns/2026-01-02_00-00-00_2"
    assert key_metrics(list(records.values()))[0].startswith("val/")
    curves = metric_curves(app_runs["run"])
    assert [step for step, _ in curves["val/akd"]] == sorted(step for step, _ in curves["val/akd"]) and len(curves["val/akd"]) == 2
    found = sequence_files(app_runs["runs"])
    assert app_runs["run"] / "animate" / "seq.npz" in found and any(p.suffix == ".gif" and p.parent.name == "previews" for p in found)
    sequence = open_sequence(app_runs["run"] / "animate" / "seq.npz")
    assert set(sequence.layers) == {"driver_keypoints", "generated_keypoints"} and len(sequence) == 8
    assert set(sequence.traces) == {"temporal_difference", "colour_drift", "motion_agreement"}
    preview = open_sequence(next(p for p in found if p.suffix == ".gif"))
    assert preview.portrait.shape == preview.generated.shape[1:] and not preview.layers


def test_jobs_cancel_keep_and_clean_up(app_runs, lipsync_checkpoints, tmp_path):
    """The app's jobs without a browser: Cancel stops an animation or a lip-sync job with nothing written; a lip-sync
    job builds a template from an uploaded talking-head video and keeps its result in <runs>/app/; uploads are always
    deleted."""
    from motionlab.app.server import JobCancelled, Viewer

    world, ckpt = app_runs["world"], app_runs["run"] / "checkpoints" / "last.ckpt"
    viewer = Viewer(app_runs["runs"], tmp_path / "work")
    (tmp_path / "work").mkdir()
    portrait, driver = (Path(shutil.copy(src, tmp_path / "work" / name)) for src, name in
                        ((world / "id_0000.png", "portrait.png"), (app_runs["run"] / "animate" / "out.mp4", "driver.mp4")))
    with pytest.raises(JobCancelled, match="cancelled; nothing was written"):
        viewer.animate(str(ckpt), str(portrait), str(driver), keep=False, progress=lambda *a, **k: viewer.cancel())
    # the uploads stay for the next job; the job's copies of them and its outputs are gone
    assert portrait.exists() and driver.exists() and not list((tmp_path / "work").rglob("result.*"))
    assert not [p for p in (tmp_path / "work").rglob("*") if p.parent.parent.name == "uploads"]
    with pytest.raises(FileNotFoundError, match="not in the runs folder"):
        viewer.animate(str(tmp_path / "elsewhere.ckpt"), str(portrait), str(driver), keep=False)

    runs = lipsync_checkpoints["unet"].parents[2]
    viewer = Viewer(runs, tmp_path / "work2")
    (tmp_path / "work2").mkdir()
    video = face_video(tmp_path / "work2" / "talk.mp4", frames=10, fps=25.0)
    samples, rate = soundfile.read(lipsync_checkpoints["clip"] / "aud.wav")
    audio = tmp_path / "work2" / "speech.wav"
    soundfile.write(audio, samples[: int(0.6 * rate)], rate)  # 15 frames of speech: the U-Net runs per frame
    unet = str(lipsync_checkpoints["unet"])
    with pytest.raises(JobCancelled):
        viewer.lipsync(unet, str(shutil.copy(video, video.with_name("t2.mp4"))), str(shutil.copy(audio, audio.with_name("s2.wav"))),
                       keep=True, progress=lambda *a, **k: viewer.cancel())
    assert not (runs / "app").exists() and not list((tmp_path / "work2").glob("*/result.*"))
    player, status = viewer.lipsync(unet, str(video), str(audio), keep=True)
    kept = next((runs / "app").glob("*/result.mp4"))
    assert str(kept) in player and "kept in app/" in status and count_video_frames(kept) == 15
    sequence = read_sequence(kept.with_suffix(".npz"))  # template | result with the U-Net's crop and mask boxes
    assert len(sequence) == 15 and set(sequence.layers) == {"crop_box", "mask_box"}
    (cx0, cy0), (cx1, cy1) = sequence.layers["crop_box"][1][0]
    (mx0, my0), (mx1, my1) = sequence.layers["mask_box"][1][0]
    assert cx0 < mx0 < mx1 < cx1 and cy0 < my0 < my1 < cy1  # the blanked rectangle lies inside the crop
    changed = (sequence.render(0, ["crop_box"]) != sequence.render(0)).any(axis=-1)
    assert changed.any() and not changed[:, : 2 * changed.shape[1] // 3].any()  # drawn on the result panel only
    assert video.exists() and audio.exists() and not [p for p in (tmp_path / "work2").rglob("*") if p.parent.parent.name == "uploads"]


def test_train_tab_job_finishes_is_cancelled_and_resumes(app_runs, tmp_path):
    """A Train-tab job (motionlab-train in a subprocess, bound to the runs folder) on a short target video from an
    Animator v1 run: cancelled once it has a checkpoint, resumed from it, finished; its adapters are exported beside
    the run and listed for the Animate tab; a profile built from the target is kept with it."""
    import time

    from motionlab.app.server import Viewer

    viewer = Viewer(app_runs["runs"], tmp_path / "work", train_overrides=["data.repeats=1", "data.max_val_frames=4", "callbacks.preview.clip_frames=4"])
    (tmp_path / "work").mkdir()
    base = app_runs["animator"] / "checkpoints" / "last.ckpt"
    assert [path for _, path in viewer.train_bases()] == [str(base)]  # the descriptor runs are not Animator v1 bases
    video = face_video(tmp_path / "work" / "target.mp4", frames=16, fps=25.0)
    line = viewer.start_training(str(base), None, True, [str(video)], 2, 0.003, 12, 2)
    assert line.startswith("**running**")
    job = viewer._training
    assert job.profile is not None and job.profile.is_file()

    def wait(condition, timeout=240):
        end = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < end, job.log_tail(30)
            time.sleep(0.5)

    wait(lambda: (job.run_dir / "checkpoints" / "last.ckpt").is_file() or job.poll() != "running")
    assert job.poll() == "running", job.log_tail(30)
    line = viewer.cancel_training()
    assert line.startswith("**cancelled**") and "Resume continues from last.ckpt" in line
    viewer.resume_training()
    wait(lambda: job.poll() != "running")
    line, curve, _, running = viewer.training_status()
    assert job.poll() == "finished", job.log_tail(30)
    assert not running and "LoRA file" in line and len(curve) > 0 and int(curve["step"].min()) <= 1  # the curve from before Cancel too
    assert (job.run_dir / "lora.safetensors").is_file()
    assert str(job.run_dir / "lora.safetensors") in [path for _, path in viewer.lora_files()]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _upload(page, element: str, path) -> None:
    """Put ``path`` into the file component ``element``, clearing what it holds first (uploads stay until replaced)."""
    clear = page.locator(f"{element} button[aria-label='Clear'], {element} button[title='Clear']")
    if clear.count():
        clear.first.click()
    page.locator(f"{element} input[type=file]").set_input_files(path)


def _wait_text(page, selector: str, text: str, timeout: float = 30_000) -> None:
    """Wait until the element's visible text contains ``text``."""
    page.wait_for_function("([selector, text]) => { const e = document.querySelector(selector); return e && e.innerText.includes(text); }",
                           arg=[selector, text], timeout=timeout)


def test_app_in_a_browser(app_runs, tmp_path):
    """The app on a free port over the runs folder: the runs table lists the run and compares its curves, a failed run
    shows failed and its one-point curve as a point; the sequence tab shows frames and the keypoint layer changes the
    image; the Animate tab offers animation runs only, its example row runs, an animate job finishes and its video
    plays, a malformed upload is a message; a Train-tab LoRA job is cancelled, resumed and finishes, and its file is
    offered in the Animate tab; files outside the runs folder are refused. Screenshots of each tab are saved (and
    copied to $MOTIONLAB_APP_SCREENSHOTS when set, for the README)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the app extra (make setup installs it)")
    from motionlab.app.server import serve

    shots = tmp_path / "screenshots"
    shots.mkdir()
    (app_runs["root"] / "secret.txt").write_text("outside the runs folder\n")
    speaker = app_runs["runs"] / "speaker" / "runs" / "r1"  # a lip-sync run: not offered by the Animate tab
    (speaker / ".hydra").mkdir(parents=True, exist_ok=True)
    (speaker / ".hydra" / "config.yaml").write_text("model:\n  _target_: motionlab.tasks.lipsync.LipSyncTask\n")
    (speaker / "checkpoints").mkdir(exist_ok=True)
    (speaker / "checkpoints" / "last.ckpt").write_bytes(b"")
    app, url, work_dir = serve(app_runs["runs"], port=_free_port(), block=False,
                               train_overrides=["data.repeats=1", "data.max_val_frames=4", "callbacks.preview.clip_frames=4"])
    run_name = str(app_runs["run"].relative_to(app_runs["runs"]))
    failed_name = str(app_runs["failed"].relative_to(app_runs["runs"]))
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.goto(url)
            # Runs: the table lists the run; comparing it draws its curves
            _wait_text(page, "#runs-table", run_name, timeout=60_000)
            page.locator("#compare-runs").get_by_label(run_name).check()
            page.wait_for_selector("#curves canvas, #curves svg", timeout=30_000)
            _wait_text(page, "#final-metrics", "val/akd")
            page.screenshot(path=shots / "runs.png", full_page=True)
            # a failed run says so; its one-point curve is drawn as a point
            row = page.locator("#runs-table").inner_text().split(failed_name, 1)[1].split("descriptor_quick/", 1)[0]
            assert "failed" in row and "finished" not in row
            page.locator("#compare-runs").get_by_label(run_name).uncheck()
            page.locator("#compare-runs").get_by_label(failed_name).check()
            page.wait_for_selector("#curve-points canvas, #curve-points svg", timeout=30_000)
            assert not page.locator("#curves").is_visible()
            # Sequences: frames, and the keypoint layer changes the image
            page.get_by_role("tab", name="Sequences").click()
            page.locator("#sequence-choice input").click()
            page.get_by_role("option", name=f"{run_name}/animate/seq.npz").click()
            image = page.locator("#sequence-image img")
            image.wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            plain = _pixels(image.screenshot())
            page.locator("#sequence-layers").get_by_label("driver_keypoints").check()
            page.wait_for_function("document.querySelector('#sequence-image img') && document.querySelector('#sequence-image img').src", timeout=10_000)
            page.wait_for_timeout(1500)
            drawn = _pixels(image.screenshot())
            assert plain.shape == drawn.shape and (np.abs(plain - drawn).max(axis=-1) > 40).sum() > 20
            page.wait_for_selector("#sequence-traces canvas, #sequence-traces svg", timeout=30_000)
            page.locator("#sequence-play").click()  # playback steps the frame slider
            page.wait_for_function("() => Number(document.querySelector('#sequence-frame input[type=number]').value) > 0", timeout=20_000)
            page.get_by_role("button", name="Pause").click()
            page.screenshot(path=shots / "sequences.png", full_page=True)
            # Animate: a malformed upload is a message, then a real job plays
            page.get_by_role("tab", name="Animate").click()
            page.locator("#animate-ckpt input").click()
            offered = page.get_by_role("option").all_inner_texts()
            assert any(name.startswith("quickstart/") for name in offered) and not any(name.startswith("speaker/") for name in offered)
            page.get_by_role("option", name=f"{run_name}/checkpoints/last.ckpt").click()
            # the example row fills both inputs, and the job runs
            page.locator("#animate-examples button, #animate-examples tr td").first.click()
            page.wait_for_function("() => document.querySelectorAll('#animate-portrait a, #animate-driver a').length >= 2", timeout=30_000)
            page.locator("#animate-run").click()
            page.wait_for_function("() => { const v = document.querySelector('#result-video'); return v && v.duration > 0; }", timeout=120_000)
            _wait_text(page, "#animate-status", "24 frames")
            (tmp_path / "broken.png").write_text("not an image\n")
            _upload(page, "#animate-portrait", tmp_path / "broken.png")
            _upload(page, "#animate-driver", app_runs["run"] / "animate" / "out.mp4")
            page.locator("#animate-run").click()
            _wait_text(page, "#animate-status", "broken.png cannot be decoded", timeout=60_000)
            assert "Traceback" not in page.content()
            _upload(page, "#animate-portrait", app_runs["world"] / "id_0002.png")
            _upload(page, "#animate-driver", app_runs["run"] / "animate" / "out.mp4")
            page.locator("#animate-run").click()
            page.wait_for_function("() => { const v = document.querySelector('#result-video'); return v && v.duration > 0; }", timeout=120_000)
            _wait_text(page, "#animate-status", "8 frames")
            page.screenshot(path=shots / "animate.png", full_page=True)
            page.get_by_role("tab", name="Lip-sync").click()
            page.wait_for_selector("#lipsync-ckpt", timeout=10_000)
            page.screenshot(path=shots / "lipsync.png", full_page=True)
            assert not [p for p in work_dir.rglob("*") if p.parent.parent.name == "uploads"]  # the jobs' copies of the uploads are gone
            # Train: a LoRA job on a short target video, cancelled once it has a checkpoint, resumed, finished
            page.get_by_role("tab", name="Train").click()
            page.locator("#train-base input").click()
            page.get_by_role("option", name=f"{app_runs['animator'].relative_to(app_runs['runs'])}/checkpoints/last.ckpt").click()
            page.locator("#train-target input[type=file]").set_input_files(face_video(tmp_path / "target.mp4", frames=16, fps=25.0))
            for field, value in (("#train-steps", "12"), ("#train-batch", "2"), ("#train-rank", "2")):
                page.locator(f"{field} input").fill(value)
            page.locator("#train-start").click()
            _wait_text(page, "#train-status", "last.ckpt saved", timeout=180_000)
            page.locator("#train-cancel").click()
            _wait_text(page, "#train-status", "Resume continues from last.ckpt", timeout=90_000)
            page.locator("#train-resume").click()
            _wait_text(page, "#train-status", "LoRA file", timeout=240_000)
            page.wait_for_selector("#train-loss canvas, #train-loss svg", timeout=30_000)
            page.screenshot(path=shots / "train.png", full_page=True)
            page.get_by_role("tab", name="Animate").click()
            page.locator("#animate-lora input").click()
            assert any(name.endswith("lora.safetensors") and name.startswith("lora_animator_target/") for name in page.get_by_role("option").all_inner_texts())
            page.keyboard.press("Escape")
            # files: inside the runs folder yes, outside (absolute or through ..) no
            inside = page.request.get(f"{url}gradio_api/file={app_runs['run'] / 'metrics.json'}")
            assert inside.status == 200 and b"val/akd" in inside.body()
            for outside in (app_runs["root"] / "secret.txt", Path("/etc/passwd"), app_runs["runs"] / ".." / "secret.txt"):
                response = page.request.get(f"{url}gradio_api/file={outside}")
                assert response.status in (403, 404) and b"outside the runs folder" not in response.body(), outside
            browser.close()
    finally:
        app.close()
    assert not work_dir.exists()  # results not kept go with the app
    for shot in ("runs", "sequences", "animate", "lipsync", "train"):
        assert (shots / f"{shot}.png").stat().st_size > 10_000
    if os.environ.get("MOTIONLAB_APP_SCREENSHOTS"):
        target = Path(os.environ["MOTIONLAB_APP_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, target / shot.name)


def test_each_tab_lists_the_checkpoints_it_can_run(tmp_path):
    """Animate lists animation runs (and adapters in its adapter list), Lip-sync lip-sync runs; a run's pretrained
    model.safetensors is not offered as a LoRA file."""
    from motionlab.app.server import Viewer

    runs = tmp_path / "logs"
    for name, target in (("anim", "motionlab.tasks.animator.AnimatorTask"), ("desc", "motionlab.tasks.descriptor.DescriptorTask"),
                         ("adapt", "motionlab.tasks.adapter.AdapterTask"), ("speak", "motionlab.tasks.lipsync.LipSyncTask")):
        folder = runs / name / "runs" / "r1"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "config.yaml").write_text(f"model:\n  _target_: {target}\n")
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (runs / "anim" / "runs" / "r1" / "pretrained").mkdir()
    for path in (runs / "anim" / "runs" / "r1" / "pretrained" / "model.safetensors", runs / "anim" / "runs" / "r1" / "pretrained" / "config.json",
                 runs / "lora_run" / "adapter.safetensors"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    viewer = Viewer(runs, tmp_path / "work")

    def listed(kind):
        return sorted(label.split("/")[0] for label, _ in viewer.checkpoints(kind))

    assert listed("animation") == ["anim", "desc"] and listed("adapter") == ["adapt"] and listed("lipsync") == ["speak"]
    assert [label for label, _ in viewer.lora_files()] == ["lora_run/adapter.safetensors"]
