"""motionlab-eval: a checkpoint on its test split and a folder of someone else's videos, same code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import compose_train, read_rgb, tiny_overrides
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from motionlab.cli.evaluate import evaluate
from motionlab.data.video_io import ClipError, list_frame_files, write_video
from motionlab.inference.animate import animate_files
from motionlab.train import train
from motionlab.utils.config import ConfigError

FAST_SUITE = ["suite.features.input_size=64", "max_frames=6", "max_clips=2", "wandb=false"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    train(compose_train(["experiment=quickstart", "logger=none", "trainer.max_epochs=1", "test=true", *tiny_overrides(root)], root / "run"))
    return root / "run" / "checkpoints" / "last.ckpt"


def compose_eval(overrides: list[str], output_dir: Path):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="motionlab.conf", version_base="1.3"):
        cfg = compose(config_name="eval", overrides=overrides)
    with open_dict(cfg):
        # set key by key: reading cfg.paths whole would resolve its ${hydra:...} entries, unset outside a Hydra run
        for key in ("root_dir", "output_dir", "work_dir", "log_dir", "data_dir", "cache_dir"):
            cfg.paths[key] = str(output_dir)
    return cfg


def test_eval_checkpoint_writes_reports(checkpoint, tmp_path):
    result = evaluate(compose_eval([f"ckpt={checkpoint}", *FAST_SUITE, "wandb=true"], tmp_path))
    expected = {"l1", "psnr", "ssim", "l1_copy_baseline", "fd_effnetlite0", "fvd_effnetlite0", "aed_effnetlite0",
                "temporal_difference", "flicker", "delta_e76", "delta_e2000", "delta_e76_slope", "residual_magnitude"}
    assert expected <= set(result["metrics"])
    stored = json.loads((tmp_path / "eval.json").read_text())
    assert stored["metrics"] == pytest.approx(result["metrics"]) and len(stored["clips"]) == 2
    assert all(row["frames"] == 6 for row in stored["clips"])
    markdown = (tmp_path / "eval.md").read_text()
    assert "| fd_effnetlite0 |" in markdown and "not comparable with published Inception-FID" in markdown
    page = (tmp_path / "eval.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 2 and all((tmp_path / s).is_file() for s in sources)
    assert list((tmp_path / "wandb").glob("offline-run-*/*.wandb"))
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["metrics"] == pytest.approx(result["metrics"]) and history[0]["command"] == "motionlab-eval"
    # the toy world holds no test identities: the validation ones, which picked the checkpoint, are never called test
    assert "(val split: no test identities held out" in result["source"]
    assert json.loads((tmp_path / "metafile.json").read_text())["split"] == "val"
    trained = json.loads((checkpoint.parents[1] / "metrics.json").read_text())
    assert "val_best/l1" in trained and not any(key.startswith("test/") for key in trained)


def test_eval_metrics_are_chosen_by_name(checkpoint, tmp_path):
    """One list picks the metrics (reconstruction always); each run appends its numbers to metrics.jsonl."""
    only = evaluate(compose_eval([f"ckpt={checkpoint}", *FAST_SUITE, "metrics=[colour]"], tmp_path))
    assert {"delta_e76", "l1", "psnr"} <= set(only["metrics"]) and not {"fd_effnetlite0", "flicker", "aed_effnetlite0"} & set(only["metrics"])
    evaluate(compose_eval([f"ckpt={checkpoint}", *FAST_SUITE, "metrics=[temporal]"], tmp_path))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "flicker" in json.loads(lines[1])["metrics"]
    with pytest.raises(ConfigError, match=r"unknown metric 'fid'; the suite's metrics are fd_effnetlite0, fid_inception, kd_effnetlite0, kid_inception"):
        evaluate(compose_eval([f"ckpt={checkpoint}", *FAST_SUITE, "metrics=[fid]"], tmp_path / "bad"))


def test_eval_scores_a_folder_of_generated_videos(checkpoint, toy_world, tmp_path):
    drivers, generated, portraits = tmp_path / "drivers", tmp_path / "generated", tmp_path / "portraits"
    portraits.mkdir()
    for name in ("id_0001", "id_0002"):
        frames = [read_rgb(p) for p in list_frame_files(toy_world / f"{name}_video")]
        write_video(drivers / f"{name}.mp4", frames, fps=25, crf=10)
        shutil.copy(toy_world / f"{name}.png", portraits / f"{name}.png")
        animate_files(checkpoint, toy_world / f"{name}.png", drivers / f"{name}.mp4", generated / f"{name}.mp4")
    out = tmp_path / "out"
    result = evaluate(compose_eval(["ckpt=null", f"generated_dir={generated}", f"driver_dir={drivers}",
                                    f"portrait_dir={portraits}", "image_size=32", *FAST_SUITE], out))
    assert [row["clip"] for row in result["clips"]] == ["id_0001", "id_0002"]
    rows = result["clips"]
    assert result["metrics"]["l1"] > 0 and result["metrics"]["l1_copy_baseline"] > 0
    assert result["metrics"]["l1"] == pytest.approx(sum(r["l1"] for r in rows) / len(rows))  # equal-length clips
    # a failed evaluation into the same folder (the second clip is broken) keeps the earlier previews and leaves no debris
    earlier = {p.name: p.read_bytes() for p in (out / "previews").iterdir()}
    (generated / "id_0002.mp4").write_bytes(b"not a video\n")
    with pytest.raises(ClipError, match="id_0002.mp4"):
        evaluate(compose_eval(["ckpt=null", f"generated_dir={generated}", f"driver_dir={drivers}",
                               f"portrait_dir={portraits}", "image_size=32", *FAST_SUITE], out))
    assert {p.name: p.read_bytes() for p in (out / "previews").iterdir()} == earlier
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # the drivers scored against themselves: ideal values
    same = evaluate(compose_eval(["ckpt=null", f"generated_dir={drivers}", f"driver_dir={drivers}", "image_size=32", *FAST_SUITE], tmp_path / "same"))
    assert same["metrics"]["l1"] == 0.0 and same["metrics"]["temporal_difference"] == 0.0
    assert abs(same["metrics"]["fd_effnetlite0"]) < 1e-3


def test_eval_a_descriptor_animator_checkpoint(animator_descriptors_checkpoint, tmp_path):
    """Its predictor supplies the descriptors from the stored detector; no descriptor cache or file is needed."""
    result = evaluate(compose_eval([f"ckpt={animator_descriptors_checkpoint}", *FAST_SUITE, "metrics=[temporal,colour]"], tmp_path))
    assert len(result["clips"]) == 2 and 0 < result["metrics"]["l1"] < 1
    assert result["metrics"]["l1"] != result["metrics"]["l1_copy_baseline"]


def test_a_checkpoint_cannot_name_code_to_run(checkpoint, tmp_path):
    """Weights-only files hold plain data, but a stored config could name any callable for instantiate: neither the
    model specs nor the stored data config may name one (nothing is run; the error names the key)."""
    import torch

    from motionlab.models import CheckpointFormatError, load_model

    marker = tmp_path / "ran"
    payload = torch.load(checkpoint, weights_only=True)
    payload["motionlab"]["config"]["data"] = {"_target_": "os.system", "command": f"touch {marker}"}
    evil_data = tmp_path / "evil_data.ckpt"
    torch.save(payload, evil_data)
    with pytest.raises(ConfigError, match=r"'data._target_' is 'os.system'"):
        evaluate(compose_eval([f"ckpt={evil_data}", *FAST_SUITE], tmp_path / "out"))
    payload = torch.load(checkpoint, weights_only=True)
    payload["motionlab"]["models"]["net"]["args"]["motion_channels"] = {"_target_": "os.system", "command": f"touch {marker}"}
    evil_model = tmp_path / "evil_model.ckpt"
    torch.save(payload, evil_model)
    with pytest.raises(CheckpointFormatError, match="motion_channels: key '_target_' is not a plain argument name"):
        load_model(evil_model)
    payload["motionlab"]["models"]["net"] = {"name": "os.system", "args": {}}
    torch.save(payload, evil_model)
    with pytest.raises(CheckpointFormatError, match="unknown model 'os.system'; registered models: animator_v1"):
        load_model(evil_model)
    assert not marker.exists()


def test_eval_config_errors(tmp_path, checkpoint):
    with pytest.raises(ConfigError, match="config key 'ckpt'"):
        evaluate(compose_eval([*FAST_SUITE], tmp_path))  # ckpt: ??? is required
    with pytest.raises(ConfigError, match="generated_dir"):
        evaluate(compose_eval(["ckpt=null", *FAST_SUITE], tmp_path))
    with pytest.raises(ConfigError, match="exclude each other"):
        evaluate(compose_eval([f"ckpt={checkpoint}", f"generated_dir={tmp_path}", *FAST_SUITE], tmp_path))


@pytest.mark.slow
def test_eval_html_screenshot_in_headless_chromium(checkpoint, tmp_path):
    """The report renders in a real browser, table and previews (needs Debian's chromium)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    evaluate(compose_eval([f"ckpt={checkpoint}", *FAST_SUITE], tmp_path))
    shot = tmp_path / "eval.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
         f"--screenshot={shot}", (tmp_path / "eval.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1400, 900)
        assert len(set(pixels.resize((140, 90)).getdata())) > 20  # text, table lines and preview colours, not a blank page


def test_eval_scores_identity_against_a_profile(checkpoint, tmp_path):
    from motionlab.metrics.profile import build_profile, write_profile

    world = next(checkpoint.parents[2].glob(".cache/toy_world_*"))  # the checkpoint's toy world, in its run's cache
    own = write_profile(build_profile(world / "id_0000_video", max_frames=4, embedder="image"), tmp_path / "id0.json")
    result = evaluate(compose_eval([f"ckpt={checkpoint}", *FAST_SUITE, "metrics=[aed_effnetlite0,temporal,colour]",
                                    f"profile={own}"], tmp_path / "out"))
    value = result["metrics"]["csim_profile_image"]
    assert 0.0 < value <= 1.0 and result["metrics"]["csim_profile_image_frames_missed"] == 0
    assert all(0.0 < row["csim_profile_image"] <= 1.0 for row in result["clips"])


def test_eval_compares_models_side_by_side(checkpoint, toy_world, tmp_path):
    """compare=[...]: a checkpoint trained here and a published FOMM file (PATH@ARCH) animate the same clips and are
    scored by the same suite, one row each, in compare.json / compare.md; a missing path fails before any work."""
    import torch

    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint

    drivers = tmp_path / "drivers"
    write_video(drivers / "id_0001.mp4", [read_rgb(p) for p in list_frame_files(toy_world / "id_0001_video")], fps=25, crf=10)
    torch.manual_seed(0)
    release = save_fomm_checkpoint(create_model("fomm_vox256"), tmp_path / "vox-cpk.pth.tar")
    out = tmp_path / "out"
    result = evaluate(compose_eval(["ckpt=null", f"compare=[{checkpoint},{release}@fomm_vox256]", f"driver_dir={drivers}", "image_size=32",
                                    "metrics=[temporal]", *FAST_SUITE[:1], "max_frames=3", "wandb=false"], out))
    # the reference rows first: the real video (the ceiling) and the copy baseline (the floor)
    assert [row["model"] for row in result["models"]] == ["real video", "copy baseline", "last.ckpt", "vox-cpk.pth.tar @fomm_vox256"]
    assert "self-reenactment" in result["source"]
    real, copy, first, second = (row["metrics"] for row in result["models"])
    assert set(first) == set(second) and first["l1"] != second["l1"]
    assert real["l1"] == 0 and copy["l1"] == pytest.approx(copy["l1_copy_baseline"])
    assert all(row["clips"][0]["frames"] == 3 for row in result["models"])
    table = (out / "compare.md").read_text().splitlines()
    assert sum(line.startswith("| last.ckpt") or line.startswith("| vox-cpk") for line in table) == 2
    assert json.loads((out / "compare.json").read_text())["models"][3]["arch"] == "fomm_vox256"
    # no protocol: every number says it is not comparable to a paper's, and why
    assert all(not entry["comparable_to_papers"] and "no paper's protocol" in entry["reason"] for entry in result["models"][2]["comparability"].values())
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        evaluate(compose_eval(["ckpt=null", f"compare=[{checkpoint},{tmp_path / 'missing.pth'}@fomm_vox256]", f"driver_dir={drivers}",
                               *FAST_SUITE], tmp_path / "bad"))


def test_eval_compares_a_lipsync_model_beside_an_animation_model(tmp_path):
    """A Wav2Lip release file lip-syncs each clip to its own audio (reconstruction), a FOMM file animates it from its
    first frame: both rows scored by one suite on the same frames."""
    import torch
    from conftest import face_video

    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint

    drivers = tmp_path / "drivers"
    drivers.mkdir()
    face_video(drivers / "astronaut.mp4", frames=10)
    torch.manual_seed(0)
    torch.save({"state_dict": {f"module.{k}": v for k, v in create_model("wav2lip96").state_dict().items()}}, tmp_path / "wav2lip.pth")
    release = save_fomm_checkpoint(create_model("fomm_vox256"), tmp_path / "vox-cpk.pth.tar")
    result = evaluate(compose_eval(["ckpt=null", f"compare=[{tmp_path / 'wav2lip.pth'}@wav2lip96,{release}@fomm_vox256]", f"driver_dir={drivers}",
                                    "image_size=160", "metrics=[temporal,lip_motion]", *FAST_SUITE[:1], "max_frames=4", "wandb=false"], tmp_path / "out"))
    rows = {row["model"]: row for row in result["models"]}
    assert set(rows) == {"real video", "copy baseline", "wav2lip.pth @wav2lip96", "vox-cpk.pth.tar @fomm_vox256"}
    assert all(row["clips"][0]["frames"] == 4 for row in rows.values())
    # rows with the clip's audio get the lip metrics: the real video against itself is the ceiling
    assert rows["real video"]["metrics"]["lip_opening_amplitude"] == pytest.approx(1.0)
    # random Wav2Lip weights paint over the lower face: dlib may find no face there, and the row says so
    assert {"lip_opening_amplitude", "lip_motion_clips_without_face"} & set(rows["wav2lip.pth @wav2lip96"]["metrics"])
    assert "lip_opening_amplitude" not in rows["vox-cpk.pth.tar @fomm_vox256"]["metrics"]
    # Wav2Lip changes only the face box: far closer to its own video than FOMM's untrained render
    assert rows["wav2lip.pth @wav2lip96"]["metrics"]["l1"] < rows["vox-cpk.pth.tar @fomm_vox256"]["metrics"]["l1"]


def test_eval_compares_a_synctalk_layout_unet(tmp_path):
    """A SyncTalk_2D-layout U-Net (its ave audio encoder in the checkpoint) lip-syncs each clip to its own audio through
    a template made from the clip (25 fps, dlib landmarks), scored against the template frames it spoke through."""
    import torch
    from conftest import face_video

    from motionlab.models import create_model

    drivers = tmp_path / "drivers"
    drivers.mkdir()
    face_video(drivers / "astronaut.mp4", frames=10, fps=25.0)
    torch.manual_seed(0)
    unet, encoder = create_model("lipsync_unet328_ave"), create_model("lipsync_audio_encoder_ave")
    state = {**{f"net.{k}": v for k, v in unet.state_dict().items()}, **{f"audio_encoder.{k}": v for k, v in encoder.state_dict().items()}}
    torch.save({"state_dict": state, "motionlab": {"task": "lipsync", "models": {"net": unet.model_info.spec(), "audio_encoder": encoder.model_info.spec()},
                                                   "predictor": {"convention": "motionlab"}}}, tmp_path / "unet.ckpt")
    result = evaluate(compose_eval(["ckpt=null", f"compare=[{tmp_path / 'unet.ckpt'}]", f"driver_dir={drivers}", "image_size=32",
                                    "metrics=[temporal]", *FAST_SUITE[:1], "max_frames=4", "wandb=false"], tmp_path / "out"))
    real, copy, row = result["models"]
    assert row["clips"][0]["frames"] == 4 and 0 < row["metrics"]["l1"] < 1 and real["metrics"]["l1"] == 0


def test_a_protocol_run_writes_metafiles_and_the_table_joins_runs(tmp_path):
    """protocol=fomm_vox1_test on a folder in its layout (one clip, its first frame the source, every frame at 256):
    the real-video and copy-baseline rows and a FOMM-format file, each with a metafile (weights hash, protocol,
    manifest, metrics with their comparability, cost); AKD and AED from FAN / OpenFace stand-ins (the real video's
    are 0); overriding a key the protocol fixes makes the run say so; motionlab-eval table joins the runs into one
    Markdown + CSV table."""
    import csv

    import torch
    from conftest import face_video, run_cli

    from motionlab.metrics.pose_evaluation import FAN, OpenFaceNN4Small2
    from motionlab.models import create_model
    from motionlab.models.fomm import save_fomm_checkpoint

    torch.manual_seed(0)
    torch.save(FAN(stacks=1).state_dict(), tmp_path / "2DFAN1.pth.tar")
    torch.save(OpenFaceNN4Small2().state_dict(), tmp_path / "openface.pth")
    networks = [f"suite.networks.akd_fan={tmp_path / '2DFAN1.pth.tar'}", f"suite.networks.aed_openface={tmp_path / 'openface.pth'}"]

    drivers = tmp_path / "vox_test"
    drivers.mkdir()
    face_video(drivers / "id10270_clip.mp4", frames=4, fps=25.0)
    torch.manual_seed(0)
    release = save_fomm_checkpoint(create_model("fomm_vox256"), tmp_path / "vox-cpk.pth.tar")
    runs = [tmp_path / "run_protocol", tmp_path / "run_overridden"]
    result = evaluate(compose_eval(["protocol=fomm_vox1_test", "ckpt=null", f"compare=[{release}@fomm_vox256]", f"driver_dir={drivers}",
                                    "wandb=false", *networks], runs[0]))
    assert result["protocol"]["name"] == "fomm_vox1_test" and result["protocol"]["paper"].startswith("FOMM")
    assert [row["model"] for row in result["models"]] == ["real video", "copy baseline", "vox-cpk.pth.tar @fomm_vox256"]
    meta = json.loads((runs[0] / "metafiles" / "model_2.json").read_text())
    assert meta["model"]["weights"][str(release)] == __import__("hashlib").sha256(release.read_bytes()).hexdigest()
    assert meta["manifest"]["clips"] == [["id10270_clip", 4]] and len(meta["manifest"]["sha256"]) == 64
    real_row = json.loads((runs[0] / "metafiles" / "model_0.json").read_text())["metrics"]
    assert real_row["akd_fan"]["value"] == 0.0 and real_row["aed_openface"]["value"] == 0.0
    assert not real_row["akd_fan"]["comparable_to_papers"] and "dlib's HOG detector" in real_row["akd_fan"]["reason"]
    # L1 is defined by its formula: under FOMM's protocol it is comparable; motionlab's own metrics never are
    assert meta["metrics"]["l1"]["comparable_to_papers"] and "formula" in meta["metrics"]["l1"]["reason"]
    assert not meta["metrics"]["flicker"]["comparable_to_papers"] and "not a paper's metric" in meta["metrics"]["flicker"]["reason"]
    assert meta["cost"]["ms_per_frame"] > 0 and meta["cost"]["peak_rss_mb"] > 0
    evaluate(compose_eval(["protocol=fomm_vox1_test", "ckpt=null", f"compare=[{release}@fomm_vox256]", f"driver_dir={drivers}",
                           "image_size=64", "reference_rows=false", "wandb=false", "metrics=[temporal]"], runs[1]))
    overridden = json.loads((runs[1] / "metafiles" / "model_0.json").read_text())
    assert overridden["protocol"]["paper"] is None and overridden["protocol"]["overridden"] == {"image_size": {"protocol": 256, "run": 64}}
    table = run_cli("motionlab-eval", "table", f"runs=[{runs[0]},{runs[1]}]", f"out={tmp_path / 'table'}", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[0].startswith("| model | protocol | split | manifest | ")
    assert sum(line.startswith("| vox-cpk.pth.tar @fomm_vox256 |") for line in lines) == 2 and any(line.startswith("| copy baseline |") for line in lines)
    assert any("not comparable to a paper's number" in line for line in lines)
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(rows) == 4 and float(rows[0]["l1"]) == 0.0 and rows[0]["l1_comparable_to_papers"] == "True"
    assert rows[3]["l1_comparable_to_papers"] == "False"  # the run that overrode image_size
    long = run_cli("motionlab-eval", "table", f"runs=[{runs[0]}]", f"out={tmp_path / 'long'}", "layout=long", "metrics=[l1,akd_fan]", cwd=tmp_path)
    assert long.returncode == 0, long.stderr
    long_rows = list(csv.DictReader((tmp_path / "long.csv").open()))
    assert {row["metric"] for row in long_rows} == {"l1", "akd_fan"} and all(row["runs"] == "1" for row in long_rows)


def test_a_run_leaves_a_pretrained_folder_every_command_reads(checkpoint, tmp_path):
    """<run>/pretrained: the best checkpoint's weights as safetensors, config.json and a model card (the toy warning,
    steps, validation numbers); from_pretrained rebuilds the network and motionlab-animate takes the folder as ckpt=;
    the best checkpoint is weights-only and cannot be resumed, last.ckpt can."""
    import torch

    from motionlab.models import from_pretrained, load_model
    from motionlab.train import _checked_resume
    from motionlab.utils.checkpoint import CheckpointFormatError, load_checkpoint

    run = checkpoint.parents[1]
    folder = run / "pretrained"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    best = next(p for p in (run / "checkpoints").glob("epoch_*.ckpt"))
    assert "optimizer_states" not in load_checkpoint(best) and "optimizer_states" in load_checkpoint(checkpoint)
    net, reference = from_pretrained(folder), load_model(best)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in reference.state_dict().items())
    card = (folder / "README.md").read_text()
    assert "Trained on the embedded toy world" in card and "| val/l1 |" in card and "from_pretrained" in card
    summary = animate_files(folder, *_toy_inputs(checkpoint), tmp_path / "out.mp4", max_frames=2)
    assert summary["frames"] == 2
    with pytest.raises(CheckpointFormatError, match="holds weights only"):
        _checked_resume(str(best))
    with pytest.raises(CheckpointFormatError, match="not a pretrained folder"):
        from_pretrained(tmp_path)


def _toy_inputs(checkpoint):
    """A portrait and a driver clip of the checkpoint's toy world."""
    world = next(checkpoint.parents[2].glob(".cache/toy_world_*"))
    clip = world / "id_0000_video"
    return world / "id_0000.png", clip
