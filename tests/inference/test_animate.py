"""motionlab-animate on a checkpoint trained here: real mp4 and GIF out, clear errors for bad inputs."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import (
    SHARED,
    compose_train,
    count_video_frames,
    motionlab_bin,
    read_rgb,
    run_cli,
    subprocess_env,
    tiny_overrides,
)
from PIL import Image

from motionlab.data.video_io import write_video
from motionlab.inference.animate import animate_files
from motionlab.models import CheckpointFormatError, load_model
from motionlab.tasks import load_predictor
from motionlab.train import train
from motionlab.utils.checkpoint import WeightMismatchError, load_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("animate")
    cfg = compose_train(["experiment=quickstart", "logger=none", "trainer.max_epochs=1", *tiny_overrides(root)], root / "run")
    train(cfg)
    return root / "run" / "checkpoints" / "last.ckpt"


def test_animate_cli_writes_mp4_and_gif(checkpoint, toy_world, tmp_path):
    driver = tmp_path / "driver.mp4"
    write_video(driver, [read_rgb(p) for p in sorted((toy_world / "id_0003_video").glob("*.png"))], fps=25)
    out, gif = tmp_path / "out.mp4", tmp_path / "side.gif"
    result = subprocess.run(
        [motionlab_bin("motionlab-animate"), f"ckpt={checkpoint}", f"portrait={toy_world / 'id_0003.png'}",
         f"driver={driver}", f"out={out}", f"gif={gif}"],
        capture_output=True, text=True, env=subprocess_env(tmp_path), timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 8 frames at 25 fps" in result.stdout
    # the launch-to-first-frame time the command reports (the start-up benchmark reads it)
    first = re.search(r"first frame ([\d.]+) s after launch", result.stdout)
    assert first and 0 < float(first.group(1)) < 300
    assert count_video_frames(out) == 8
    with Image.open(gif) as image:
        assert image.n_frames == 8 and image.size == (3 * 32, 32)
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.glob("*.log"))


def test_animate_frame_folder_driver_matches_direct_network(checkpoint, toy_world, tmp_path):
    summary = animate_files(checkpoint, toy_world / "id_0001.png", toy_world / "id_0001_video", tmp_path / "o.mp4", fps=10, max_frames=5)
    assert summary["frames"] == 5 and count_video_frames(tmp_path / "o.mp4") == 5
    net = load_model(checkpoint)
    assert net.model_info.name == "animator_v1" and net.model_info.input_size == (32, 32)
    portrait = torch.from_numpy(read_rgb(toy_world / "id_0001.png")).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        out = net(portrait, portrait)["image"]
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_weights_of_another_architecture_are_refused(checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    payload["motionlab"]["models"]["net"]["args"]["num_res_blocks"] = 2
    bad = tmp_path / "bad.ckpt"
    torch.save(payload, bad)
    with pytest.raises(WeightMismatchError, match=r"missing keys \(\d+\): bottleneck\.1\."):
        load_model(bad)


def test_non_motionlab_and_missing_files_are_clear_errors(tmp_path, toy_world, checkpoint):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointFormatError, match="not a motionlab checkpoint.*arch=NAME, one of: animator_v1, .*fomm_mgif256"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointFormatError, match="cannot be read weights-only"):
        load_model(truncated)
    with pytest.raises(Exception, match="nope.png"):
        animate_files(checkpoint, tmp_path / "nope.png", toy_world / "id_0001_video", tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
    assert np.all(np.isfinite(read_rgb(toy_world / "id_0001.png")))


def test_animate_with_keypoints_writes_overlay(descriptor_ckpt, toy_world, tmp_path):
    from motionlab.inference.animate import animate_frames

    out, sbs = tmp_path / "kp.mp4", tmp_path / "kp_side.mp4"
    summary = animate_files(descriptor_ckpt, toy_world / "id_0002.png", toy_world / "id_0002_video", out,
                            side_by_side_out=sbs, predictor={"adapt_movement_scale": True})
    assert summary["frames"] == 8 and count_video_frames(out) == 8 and count_video_frames(sbs) == 8
    predictor = load_predictor(descriptor_ckpt)
    frames = np.stack([read_rgb(toy_world / "id_0002_video" / f"{t:04d}.png") for t in range(3)])
    first = next(animate_frames(predictor, read_rgb(toy_world / "id_0002.png"), frames))
    assert first["driver_keypoints"].value.shape == (3, 4, 2) and first["generated"].shape == (3, 3, 32, 32)
    assert first["driver_keypoints"].to_pixels().value.max() <= 31
    # relative transfer: on the driver's first frame the portrait keeps its own keypoints, so the source is re-rendered
    with torch.no_grad():
        kp_source = predictor.net.kp_detector(first["portrait"][:1])
        direct = predictor.net.generator(first["portrait"][:1], kp_driving=kp_source, kp_source=kp_source)["prediction"]
    assert torch.allclose(first["generated"][0], direct[0].clamp(0, 1), atol=1e-5)


def test_animate_a_descriptor_animator_checkpoint(animator_descriptors_checkpoint, toy_world, tmp_path):
    """The descriptor Animator needs keypoints only its task computes: its predictor detects them with the frozen
    detector stored in the checkpoint (the descriptor run's file is gone), exactly as the task does."""
    from motionlab.tasks.animator_predictor import AnimatorPredictor, animate

    out = tmp_path / "desc.mp4"
    summary = animate_files(animator_descriptors_checkpoint, toy_world / "id_0004.png", toy_world / "id_0004_video", out, gif=tmp_path / "d.gif")
    assert summary["frames"] == 8 and count_video_frames(out) == 8
    predictor = load_predictor(animator_descriptors_checkpoint)
    assert isinstance(predictor, AnimatorPredictor) and predictor.descriptor_model is not None
    portrait = torch.from_numpy(read_rgb(toy_world / "id_0004.png")).permute(2, 0, 1)[None] / 255.0
    driver = torch.from_numpy(read_rgb(toy_world / "id_0004_video" / "0003.png")).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        descriptors = (predictor.descriptor_model(portrait).value, predictor.descriptor_model(driver).value)
        direct = predictor.net(portrait, driver, portrait_descriptors=descriptors[0], driver_descriptors=descriptors[1])["image"].clamp(0, 1)
        assert torch.allclose(predictor(portrait, driver, driver)["generated"], direct, atol=1e-6)
        assert torch.allclose(animate(predictor.net, predictor.descriptor_model, portrait, driver)["image"].clamp(0, 1), direct)


def test_descriptor_animator_fine_tunes_its_detector_and_inference_uses_the_tuned_one(descriptor_ckpt, tmp_path):
    """model.descriptor_lr_scale > 0: the detector trains end to end with the Animator at that fraction of the
    learning rate, its batch-norm statistics as loaded; the checkpoint carries the tuned detector to inference."""
    from hydra.errors import InstantiationException

    from motionlab.utils.errors import InputError

    common = ["experiment=animator_descriptors_quick", "logger=none", f"model.descriptor_model.ckpt={descriptor_ckpt}",
              "model.descriptor_lr_scale=0.1", *tiny_overrides(tmp_path, "animator_descriptors_quick")]
    metrics, objects = train(compose_train([*common, "trainer.max_epochs=1", "trainer.limit_train_batches=2"], tmp_path / "run"))
    assert metrics["train/descriptor_motion"] > 0
    net_group, detector_group = objects["trainer"].optimizers[0].param_groups
    assert detector_group["lr"] == pytest.approx(0.1 * net_group["lr"]) and detector_group["lr"] > 0
    before = {k.removeprefix("net.kp_detector."): v for k, v in load_checkpoint(descriptor_ckpt)["state_dict"].items()
              if k.startswith("net.kp_detector.")}
    tuned_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    tuned = {k.removeprefix("descriptor_model."): v for k, v in load_checkpoint(tuned_path)["state_dict"].items()
             if k.startswith("descriptor_model.")}
    assert tuned.keys() == before.keys()
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(tuned[k], before[k]) for k in statistics)
    assert any(not torch.equal(tuned[k], before[k]) for k in before if k.endswith("weight"))
    predictor = load_predictor(tuned_path)
    assert all(torch.equal(v, tuned[k]) for k, v in predictor.descriptor_model.state_dict().items())

    with pytest.raises(InputError, match="cached descriptors"):
        train(compose_train([*common, "trainer.fast_dev_run=true", f"data.descriptor_ckpt={descriptor_ckpt}"], tmp_path / "cached"))
    with pytest.raises(InstantiationException, match="alignment_mode=descriptor"):  # hydra wraps the task's InputError
        train(compose_train([*common, "trainer.fast_dev_run=true", "loss=animator_descriptors"], tmp_path / "aligned"))
    with pytest.raises(InputError, match=r"helper network\(s\) \['descriptor_model'\]"):
        objects["model"].add_lora(None, tuned_path)


@pytest.mark.skipif(not (SHARED / "data" / "real" / "drivers" / "human_d0.mp4").is_file(), reason="../shared/data/real is not present")
def test_animate_real_driver_and_portrait(descriptor_ckpt, tmp_path):
    """A real human driver clip and a real cartoon portrait go through the whole path (toy-trained weights)."""
    real = SHARED / "data" / "real"
    out = tmp_path / "real.mp4"
    summary = animate_files(descriptor_ckpt, real / "portraits" / "portrait_s7.jpg", real / "drivers" / "human_d0.mp4",
                            out, max_frames=20, side_by_side_out=tmp_path / "real_side.mp4")
    assert summary["frames"] == 20 and summary["fps"] == pytest.approx(25.0)
    assert count_video_frames(out) == 20


def test_animate_with_a_fomm_release_checkpoint(toy_world, tmp_path):
    """The published vox-256 format (kp_detector + generator + optimiser entries) drives a portrait (at 256 x 256 in
    the network; the video at the portrait's own 32 x 32)."""
    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint

    torch.manual_seed(0)
    release = save_fomm_checkpoint(create_model("fomm_vox256"), tmp_path / "vox-cpk.pth.tar", epoch=99)
    with pytest.raises(CheckpointFormatError, match="arch=NAME"):
        load_model(release)
    summary = animate_files(release, toy_world / "id_0001.png", toy_world / "id_0001_video", tmp_path / "fomm.mp4",
                            max_frames=2, arch="fomm_vox256")
    assert summary["frames"] == 2
    import av

    with av.open(str(tmp_path / "fomm.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (32, 32)


@pytest.mark.skipif(not (SHARED / "data" / "real" / "drivers" / "human_d0.mp4").is_file(), reason="../shared/data/real is not present")
def test_animate_a_real_portrait_with_a_tpsmm_release_file(tmp_path):
    """A TPSMM release-layout file (vox.pth.tar: five state dicts, optimisers, epoch; random weights) animates a real
    photo with a real talking clip (256 px in the network, the face pasted back into the 1145-px photo), in the demo's
    relative and avd modes (the three modes' keypoints are checked on constructed keypoints in tests/models/test_tpsmm.py),
    video written."""
    import av

    from motionlab.data.video_io import open_clip
    from motionlab.models import create_model

    torch.manual_seed(0)
    model = create_model("tpsmm_vox256")
    release = tmp_path / "vox.pth.tar"
    torch.save({**{part: getattr(model, part).state_dict() for part in ("kp_detector", "dense_motion_network", "inpainting_network",
                                                                          "avd_network", "bg_predictor")}, "optimizer": {}, "epoch": 99}, release)
    real = SHARED / "data" / "real"
    videos = {}
    for name, options in {"relative": {}, "avd": {"avd": True}}.items():
        summary = animate_files(release, real / "portraits" / "portrait_s1.jpg", real / "drivers" / "human_talk_d6.mp4", tmp_path / f"{name}.mp4",
                                max_frames=2 if name == "relative" else 1, arch="tpsmm_vox256", predictor=options, fast_convolutions=False)
        with av.open(str(tmp_path / f"{name}.mp4")) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (1144, 1144) and summary["frames"] == (2 if name == "relative" else 1)
        videos[name] = open_clip(tmp_path / f"{name}.mp4").get([0])[0].astype(float)
    assert np.abs(videos["relative"] - videos["avd"]).mean() > 0


def test_animate_streams_the_driver_and_downscales_huge_portraits(checkpoint, toy_world, tmp_path, monkeypatch, caplog):
    """The driver is decoded as it is needed, never more than a batch ahead of the frames written (memory does not grow
    with its length); a video streams the very frames random access reads; a portrait larger than
    limits.max_portrait_side is downscaled while read, with a warning."""
    from motionlab.data.video_io import FrameFolderClip, InputLimits, limited, open_clip

    read, leads = [0], []
    real_stream = FrameFolderClip.stream

    def counted_stream(self, count=None):
        for frame in real_stream(self, count):
            read[0] += 1
            yield frame

    monkeypatch.setattr(FrameFolderClip, "stream", counted_stream)
    summary = animate_files(checkpoint, toy_world / "id_0001.png", toy_world / "id_0001_video", tmp_path / "a.mp4", batch_size=3,
                            on_frame=lambda done, total: leads.append(read[0] - done))
    assert summary["frames"] == read[0] == 8 and max(leads) <= 3
    write_video(tmp_path / "driver.mp4", open_clip(toy_world / "id_0001_video").get(range(8)), fps=25.0)
    video = open_clip(tmp_path / "driver.mp4")
    assert np.array_equal(np.stack(list(video.stream(5))), video.get(range(5)))
    with limited(InputLimits(max_portrait_side=16)), caplog.at_level("WARNING"):
        animate_files(checkpoint, toy_world / "id_0001.png", toy_world / "id_0001_video", tmp_path / "b.mp4", batch_size=3)
    assert "downscaled to at most 16" in caplog.text and count_video_frames(tmp_path / "b.mp4") == 8


def test_unusual_drivers_animate(checkpoint, toy_world, tmp_path):
    """A one-frame video and a frame folder of odd size (33 x 31) and mixed modes (grey, RGBA, 16-bit) animate."""
    frame = read_rgb(toy_world / "id_0002_video" / "0000.png")
    write_video(tmp_path / "one.mp4", [np.kron(frame, np.ones((2, 2, 1), np.uint8))], fps=25.0)
    assert animate_files(checkpoint, toy_world / "id_0001.png", tmp_path / "one.mp4", tmp_path / "one_out.mp4")["frames"] == 1
    folder = tmp_path / "odd"
    folder.mkdir()
    odd = np.asarray(Image.fromarray(frame).resize((33, 31)))
    Image.fromarray(odd).convert("L").save(folder / "0.png")
    Image.fromarray(odd).convert("RGBA").save(folder / "1.png")
    Image.fromarray((odd[..., 0].astype(np.uint16) * 257)).save(folder / "2.png")
    assert animate_files(checkpoint, toy_world / "id_0001.png", folder, tmp_path / "odd_out.mp4")["frames"] == 3


def test_variable_frame_rate_driver(checkpoint, toy_world, tmp_path, caplog):
    """A driver whose frames are unevenly spaced (10 to 70 ms apart) animates every frame, and a warning says the
    timing changes; a constant-rate driver gives no such warning."""
    import av

    frames = [read_rgb(toy_world / "id_0002_video" / f"{i:04d}.png") for i in range(8)]
    with av.open(str(tmp_path / "vfr.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt, stream.codec_context.time_base = "yuv420p", Fraction(1, 1000)
        for frame, pts in zip(frames, [0, 40, 50, 120, 160, 200, 270, 280]):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with caplog.at_level("WARNING"):
        summary = animate_files(checkpoint, toy_world / "id_0001.png", tmp_path / "vfr.mp4", tmp_path / "out.mp4")
    assert summary["frames"] == 8 and count_video_frames(tmp_path / "out.mp4") == 8
    assert "variable frame rate (10 to 70 ms between frames)" in caplog.text
    caplog.clear()
    write_video(tmp_path / "cfr.mp4", frames, fps=25.0)
    with caplog.at_level("WARNING"):
        animate_files(checkpoint, toy_world / "id_0001.png", tmp_path / "cfr.mp4", tmp_path / "out2.mp4")
    assert "variable frame rate" not in caplog.text


def test_a_toy_model_on_real_media_says_so(checkpoint, toy_world, tmp_path):
    """A checkpoint records what it was trained on; animating media from outside the toy world with a toy-world model
    prints one line saying so and what to use instead. Toy media animates without it."""
    assert load_checkpoint(checkpoint)["motionlab"]["data"] == {"domain": "toy_world", "resolution": 32}
    photo = SHARED / "data" / "real" / "portraits" / "portrait_s1.jpg"
    if not photo.is_file():  # without ../shared: an image that is no toy world's
        photo = tmp_path / "photo.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 90, 3), np.uint8)).save(photo)
    args = [f"ckpt={checkpoint}", f"driver={toy_world / 'id_0001_video'}", "out=out.mp4"]
    real = run_cli("motionlab-animate", f"portrait={photo}", *args, cwd=tmp_path)
    toy = run_cli("motionlab-animate", f"portrait={toy_world / 'id_0001.png'}", *args, cwd=tmp_path)
    assert real.returncode == 0 and toy.returncode == 0, real.stderr[-2000:] + toy.stderr[-2000:]
    lines = [line for line in (real.stdout + real.stderr).splitlines() if "trained on the embedded toy world" in line]
    assert len(lines) == 1 and f"on {photo.name} it gives a low-resolution approximation" in lines[0] and "FOMM arch=fomm_vox256" in lines[0]
    assert "trained on the embedded toy world" not in toy.stdout + toy.stderr


def test_an_option_of_another_predictor_family_is_an_error(checkpoint, toy_world, tmp_path):
    """predictor.<key> options are checked against the checkpoint's family: a LivePortrait option given to the Animator
    names the key and the Animator's options (none), and nothing is written."""
    result = run_cli("motionlab-animate", f"ckpt={checkpoint}", f"portrait={toy_world / 'id_0001.png'}", f"driver={toy_world / 'id_0001_video'}",
                     "out=out.mp4", "predictor.stitching=false", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "out.mp4").exists()
    assert "predictor option 'stitching' is not an option of animator models" in result.stderr and "its options are: none" in result.stderr
    old = run_cli("motionlab-animate", f"ckpt={checkpoint}", f"portrait={toy_world / 'id_0001.png'}", f"driver={toy_world / 'id_0001_video'}",
                  "out=old.mp4", "liveportrait.stitching=false", cwd=tmp_path)
    assert "deprecated: 'liveportrait.stitching' is now 'predictor.stitching'" in old.stderr and old.returncode == 2


def test_results_keep_the_portraits_size_and_aspect(tmp_path):
    """A 64-px network on a non-square photo (a real face, 512 x 360): the face cropped, animated and pasted back, the
    video at the photo's size with the photo itself away from the face; a small non-square image is letterboxed (its
    edge repeated to a square) and cut back out, at its own size; size= sets the longer side instead."""
    import av
    from skimage import data

    from motionlab.data.crops import letterbox, unletterbox
    from motionlab.models import create_model

    torch.manual_seed(0)
    net = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "motionlab": {"task": "animator", "models": {"net": net.model_info.spec()}}}, tmp_path / "tiny.ckpt")
    photo = np.ascontiguousarray(data.astronaut()[:360])
    small = np.ascontiguousarray(photo[::6, ::4][:50, :96])
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(small).save(tmp_path / "small.png")
    write_video(tmp_path / "driver.mp4", [np.roll(photo[:256, 128:384], 4 * i, axis=0) for i in range(3)], fps=25, crf=10)
    for name, image in (("photo", photo), ("small", small)):
        animate_files(tmp_path / "tiny.ckpt", tmp_path / f"{name}.png", tmp_path / "driver.mp4", tmp_path / f"{name}.mp4")
        with av.open(str(tmp_path / f"{name}.mp4")) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
        assert frame.shape == image.shape, name
    # the photo's face was cropped and pasted back: away from the face, the photo's own pixels
    with av.open(str(tmp_path / "photo.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(first[-40:, -60:].astype(int) - photo[-40:, -60:]).mean() < 6
    square, box = letterbox(small, 64)
    assert square.shape == (64, 64, 3) and unletterbox(np.zeros((64, 64, 3), np.uint8), box).shape == small.shape
    # size= sets the longer side, the aspect kept
    animate_files(tmp_path / "tiny.ckpt", tmp_path / "photo.png", tmp_path / "driver.mp4", tmp_path / "sized.mp4", max_frames=1, size=128)
    with av.open(str(tmp_path / "sized.mp4")) as container:
        assert next(container.decode(video=0)).to_ndarray(format="rgb24").shape == (90, 128, 3)


def test_bf16_is_gated_by_the_animated_frames_psnr(checkpoint, toy_world, tmp_path, monkeypatch):
    """precision=bf16 where the CPU has it: the first driver frames' results compared with fp32's (PSNR reported, above
    the 35 dB floor); refused above an unreachable floor, run anyway when forced; a CPU without bf16 runs fp32."""
    from motionlab.utils.errors import InputError
    from motionlab.utils.machine import CpuProfile

    common = (checkpoint, toy_world / "id_0001.png", toy_world / "id_0001_video")
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("bf16 CPU", 2, ("avx512f", "avx512_bf16")))
    summary = animate_files(*common, tmp_path / "bf16.mp4", max_frames=6, precision="bf16")
    assert summary["precision"] == "bf16" and 35 < summary["precision_psnr_db"] < 200 and summary["frames"] == 6
    with pytest.raises(InputError, match="the animated frames is .* below the 500 dB floor"):
        animate_files(*common, tmp_path / "refused.mp4", precision="bf16", precision_floor_db=500.0)
    assert not (tmp_path / "refused.mp4").exists()
    forced = animate_files(*common, tmp_path / "forced.mp4", max_frames=2, precision="bf16", precision_floor_db=500.0, precision_force=True)
    assert forced["precision"] == "bf16" and forced["precision_psnr_db"] < 500
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("old CPU", 2, ("avx2",)))
    plain = animate_files(*common, tmp_path / "plain.mp4", max_frames=2, precision="bf16")
    assert plain["precision"] == "fp32" and plain["precision_psnr_db"] is None


def test_int8_is_calibrated_and_gated_on_the_run(tpsmm_ckpt, checkpoint, tmp_path, monkeypatch):
    """precision=int8 where the CPU has int8 dot products: a TPSMM checkpoint's heavy blocks are quantized on this run's
    portrait and first driver frames (a real photo and its crops) and checked against fp32 there (PSNR reported, above
    the 35 dB floor), as bf16 is; refused above an unreachable floor; a network that lists no int8 modules, or a CPU without int8
    SIMD kernels (VNNI / AMX or AVX2), is told so."""
    from skimage import data

    from motionlab.utils.errors import InputError
    from motionlab.utils.machine import CpuProfile

    photo = np.ascontiguousarray(data.astronaut())
    Image.fromarray(photo[:256, 100:356]).save(tmp_path / "portrait.png")
    write_video(tmp_path / "driver.mp4", [np.roll(photo[:256, 128:384], 3 * i, axis=1) for i in range(6)], fps=25, crf=10)
    common = (tmp_path / "portrait.png", tmp_path / "driver.mp4")
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("AVX-512 CPU", 2, ("avx512f", "avx512_vnni", "avx512_bf16")))
    # bf16 leaves TPSMM's keypoints and dense motion in float32 (its float32_modules): the frames reach the floor
    bf16 = animate_files(tpsmm_ckpt, *common, tmp_path / "bf16.mp4", max_frames=2, precision="bf16")
    assert bf16["precision"] == "bf16" and 35 < bf16["precision_psnr_db"] < 200
    summary = animate_files(tpsmm_ckpt, *common, tmp_path / "int8.mp4", precision="int8")
    assert summary["precision"] == "int8" and 35 < summary["precision_psnr_db"] < 200 and summary["frames"] == 6
    assert count_video_frames(tmp_path / "int8.mp4") == 6
    with pytest.raises(InputError, match="precision=int8: the animated frames is .* below the 500 dB floor"):
        animate_files(tpsmm_ckpt, *common, tmp_path / "refused.mp4", precision="int8", precision_floor_db=500.0)
    assert not (tmp_path / "refused.mp4").exists()
    with pytest.raises(InputError, match="precision=int8: animator_v1 lists no modules to quantize"):
        animate_files(checkpoint, *common, tmp_path / "animator.mp4", precision="int8")
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("old CPU", 2, ()))
    plain = animate_files(tpsmm_ckpt, *common, tmp_path / "plain.mp4", max_frames=2, precision="int8")
    assert plain["precision"] == "fp32" and plain["precision_psnr_db"] is None
