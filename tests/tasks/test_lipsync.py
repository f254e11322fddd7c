"""Lip-sync end to end on real files: the datamodule over a toy talking head, the three training stages,
the sync losses and metrics, video inference (frame count, audio duration, paste-back) and ONNX parity."""

from __future__ import annotations

import json
import shutil
import subprocess

import av
import numpy as np
import pytest
import soundfile
import torch
from conftest import face_video, motionlab_bin, subprocess_env

from motionlab.data.audio import AudioError
from motionlab.data.landmarks import read_lms
from motionlab.data.lipsync import TalkingClip, audio_features, temporal_split
from motionlab.data.lipsync_datamodule import LipSyncDataModule
from motionlab.data.talking import crop_face
from motionlab.data.video_io import read_image
from motionlab.inference.lipsync import bounce_index, feather_mask, paste_back
from motionlab.losses.sync import sync_pair_loss
from motionlab.models import CheckpointFormatError, create_model, load_model
from motionlab.models.lipsync import CONVENTIONS, LipSyncUNet, SyncNet
from motionlab.tasks import load_predictor
from motionlab.tasks.lipsync_predictor import SYNCTALK_MASK, LipSyncPredictor, mask_face
from motionlab.utils.checkpoint import WeightMismatchError


def test_temporal_split_leaves_a_context_gap():
    train, val = temporal_split(100, 0.2)
    assert val.tolist() == list(range(80, 100)) and train.max() == 100 - 20 - 16 - 1
    with pytest.raises(Exception, match="too short"):
        temporal_split(20, 0.5)


def test_datamodule_samples(talking_clip, lipsync_checkpoints, tmp_path):
    clip = shutil.copytree(talking_clip, tmp_path / "clip")
    data = LipSyncDataModule(root=str(clip), mode="ave", audio_encoder_ckpt=str(lipsync_checkpoints["audio_encoder"]), val_fraction=0.3, batch_size=3)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["face"].shape == batch["reference"].shape == (3, 3, 320, 320)
    assert batch["mel"].shape == batch["mel_offsync"].shape == (3, 1, 80, 16)
    assert batch["audio"].shape == batch["audio_offsync"].shape == (3, 32, 16, 16)
    val = data.datasets["val"]
    sample = val[0]
    assert torch.equal(sample["reference"], val[0]["reference"])  # validation is repeatable
    rng = np.random.default_rng(0)
    for c, i in val.items:  # off-sync audio comes from frames of the same split at least min_offset away
        j = val._offsync(c, i, rng)
        assert abs(j - i) >= data.min_offset and j in val.indices[c]
    # the crop is the landmark crop of the frame on disk
    frame = read_image(clip / "full_body_img" / "0.jpg")
    assert np.array_equal(TalkingClip(clip).crops[0], crop_face(frame, read_lms(clip / "landmarks" / "0.lms"), CONVENTIONS["motionlab"])[0])


def test_ave_feature_cache_hit_stale_and_user_file(talking_clip, lipsync_checkpoints, tmp_path, caplog):
    clip_dir = shutil.copytree(talking_clip, tmp_path / "clip")
    for name in ("aud_ave.npy", "aud_ave.json"):
        (clip_dir / name).unlink(missing_ok=True)
    encoder = lipsync_checkpoints["audio_encoder"]
    clip = TalkingClip(clip_dir)
    first = audio_features(clip, "ave", encoder)
    assert first.shape == (len(clip), 512) and (clip_dir / "aud_ave.json").is_file()
    stamp = (clip_dir / "aud_ave.npy").stat().st_mtime_ns
    assert torch.equal(audio_features(clip, "ave", encoder), first) and (clip_dir / "aud_ave.npy").stat().st_mtime_ns == stamp  # hit
    manifest = json.loads((clip_dir / "aud_ave.json").read_text())
    (clip_dir / "aud_ave.json").write_text(json.dumps({**manifest, "encoder_sha256": "0" * 64}))
    with caplog.at_level("WARNING"):
        assert torch.allclose(audio_features(clip, "ave", encoder), first)  # stale: recomputed
    assert "another audio encoder" in caplog.text
    # a file without a manifest is SyncTalk_2D's: used under its convention, refused under motionlab's, kept aside
    # when an encoder is given
    (clip_dir / "aud_ave.json").unlink()
    np.save(clip_dir / "aud_ave.npy", np.ones((len(clip) + 1, 512), np.float32))
    assert audio_features(TalkingClip(clip_dir, convention="synctalk_2d"), "ave").eq(1).all()
    with pytest.raises(AudioError, match="holds synctalk_2d features .*no motionlab manifest.*reads motionlab ones"):
        audio_features(clip, "ave")
    audio_features(clip, "ave", encoder)
    assert np.load(clip_dir / "aud_ave.user.npy").shape == (len(clip) + 1, 512)


def test_preprocessing_writes_ave_features(lipsync_checkpoints, tmp_path):
    from conftest import run_cli

    video = face_video(tmp_path / "talk.mp4")
    out = tmp_path / "talk"
    result = run_cli("motionlab-data", "talking", f"video={video}", f"out={out}", f"audio_encoder={lipsync_checkpoints['audio_encoder']}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.load(out / "aud_ave.npy").shape == (25, 512)
    assert json.loads((out / "aud_ave.json").read_text())["frames"] == 25


def test_silent_training_audio_is_refused(talking_clip, tmp_path):
    clip_dir = shutil.copytree(talking_clip, tmp_path / "clip")
    soundfile.write(clip_dir / "aud.wav", np.zeros(48000, np.float32), 16000)
    with pytest.raises(AudioError, match=r"aud.wav is silent .*audio track"):
        _ = TalkingClip(clip_dir).mel


def test_hubert_and_wenet_features_are_shape_checked(talking_clip, tmp_path):
    clip_dir = shutil.copytree(talking_clip, tmp_path / "clip")
    clip = TalkingClip(clip_dir)
    with pytest.raises(AudioError, match="aud_hu.npy does not exist"):
        audio_features(clip, "hubert")
    np.save(clip_dir / "aud_hu.npy", np.zeros((len(clip), 2, 1024), np.float32))
    with pytest.raises(AudioError, match=r"holds synctalk_2d features .*aud_hu.json"):
        audio_features(clip, "hubert")  # without a manifest: SyncTalk_2D's rows, one frame off for a motionlab model
    (clip_dir / "aud_hu.json").write_text('{"convention": "motionlab"}')
    assert audio_features(clip, "hubert").shape == (len(clip), 2048)
    np.save(clip_dir / "aud_wenet.npy", np.zeros((len(clip), 1000), np.float32))
    (clip_dir / "aud_wenet.json").write_text('{"convention": "motionlab"}')
    with pytest.raises(AudioError, match=r"8192 values per video frame .*\(256, 16, 32\)"):
        audio_features(clip, "wenet")


def test_sync_loss_labels_both_ways():
    a = torch.nn.functional.normalize(torch.rand(4, 8), dim=1)
    orthogonal = torch.nn.functional.normalize(torch.cat([torch.zeros(4, 4), torch.ones(4, 4)], 1), dim=1)
    aligned = torch.nn.functional.normalize(torch.cat([torch.ones(4, 4), torch.zeros(4, 4)], 1), dim=1)
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert sync_pair_loss(a, a, ones) < 1e-4 and sync_pair_loss(aligned, orthogonal, zeros) < 1e-4
    assert sync_pair_loss(a, a, zeros) > 5 and sync_pair_loss(aligned, orthogonal, ones) > 5


def test_three_stages_trained_and_logged(lipsync_checkpoints):
    av, syncnet, unet = (lipsync_checkpoints[f"{k}_metrics"] for k in ("audio_encoder", "syncnet", "unet"))
    for metrics in (av, syncnet):
        assert 0.0 <= metrics["val/sync_acc"] <= 1.0 and np.isfinite(metrics["val/loss"])
        assert {"val/lse_d_ours", "val/lse_c_ours", "val/sync_offset_ours"} <= set(metrics)  # 22 held-out frames: the +-15 sweep ran
    assert unet["val/mouth_l1"] > 0 and "train/sync" in unet and "train/perceptual" in unet and "val/lse_c_ours" in unet
    assert unet["before/val/mouth_l1"] > 0 and unet["before/val/mouth_l1"] != unet["val/mouth_l1"]  # validated before training too
    assert unet["val/mouth_l1_reference"] == pytest.approx(unet["before/val/mouth_l1_reference"])  # the copy baseline: same frames


def test_sync_stage_zeroes_gradients_between_steps(lipsync_checkpoints, tmp_path):
    """Lightning zeroes gradients before every step (SyncTalk_2D's SyncNet loop never does): with lr 0 the
    gradient applied at step 2 equals a fresh backward of step 2's batch, not the sum with step 1's."""
    import lightning as L
    from conftest import compose_train
    from hydra.utils import instantiate

    seen = {}

    class Probe(L.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen[trainer.global_step] = module.net.face[0].conv_block[0].weight.grad.clone()

    cfg = compose_train(["experiment=lipsync_av_real_quick", f"data.root={lipsync_checkpoints['clip']}", "data.val_fraction=0.3",
                         "data.eval_batch_size=2", "model.optimizer.lr=0.0", "model.optimizer.weight_decay=0.0", "model.max_shift=0",
                         f"paths.root_dir={tmp_path}"],
                        tmp_path / "run")
    task, data = instantiate(cfg.model, loss=cfg.loss), instantiate(cfg.data)
    data.setup()
    loader = data.val_dataloader()  # fixed pairs: the same batches can be drawn again below
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Probe()], limit_val_batches=0)
    trainer.fit(task, train_dataloaders=loader)
    second = list(loader)[1]
    task.zero_grad()
    task.loss(task._embeddings(second), second)["total"].backward()
    fresh = task.net.face[0].conv_block[0].weight.grad
    assert torch.allclose(seen[1], fresh, atol=1e-6) and not torch.allclose(seen[1], seen[0] + fresh, atol=1e-6)


def test_bounce_feather_and_paste_back():
    assert [bounce_index(i, 4) for i in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert bounce_index(5, 1) == 0
    mask = feather_mask(40, 30, 8)
    assert mask.shape == (40, 30, 1) and mask[20, 15, 0] == 1 and mask[0, 15, 0] == pytest.approx(1 / 8)
    frame = np.full((200, 200, 3), 50, np.uint8)
    face = np.full((320, 320, 3), 200, np.uint8)
    hard, soft = (paste_back(frame, face, (40, 60, 140, 160), feather, CONVENTIONS["motionlab"]) for feather in (0, 12))
    assert (hard[:60] == 50).all() and (hard[160:] == 50).all() and abs(int(hard[110, 90, 0]) - 200) <= 1
    assert hard[61, 90, 0] > soft[61, 90, 0] > 50  # the seam is blended
    assert abs(int(soft[110, 90, 0]) - 200) <= 1


def test_synctalk_feature_file_matches_and_conventions_do_not_mix(talking_clip, tmp_path):
    """SyncTalk_2D's aud_ave.npy for a wav (its own writer, benchmarks/synctalk_reference.py) equals motionlab's
    computation under the synctalk_2d convention exactly; a motionlab U-Net refuses that file."""
    from benchmarks.synctalk_reference import synctalk_aud_ave
    from motionlab.data.audio import load_wav
    from motionlab.data.lipsync import speech_features

    torch.manual_seed(0)
    encoder = create_model("lipsync_audio_encoder_ave").eval()
    wav_path = talking_clip / "aud.wav"  # 3.0 s: 241 mel frames, 72 windows, 74 rows
    reference = synctalk_aud_ave(encoder, wav_path)
    wav = load_wav(wav_path)
    ours = speech_features(encoder, wav, CONVENTIONS["synctalk_2d"])
    assert reference.shape == (74, 512) and np.array_equal(ours.numpy(), reference)
    np.save(tmp_path / "aud_ave.npy", reference)
    synctalk = LipSyncPredictor(create_model("lipsync_unet328_ave"), encoder, convention="synctalk_2d")
    features, frames = synctalk.speech_features(wav, 25.0, tmp_path / "aud_ave.npy")
    assert frames == 74 and np.array_equal(features.numpy(), reference)  # one output frame per row, as SyncTalk_2D
    motionlab = LipSyncPredictor(synctalk.net, encoder)
    assert motionlab.speech_features(wav, 25.0)[1] == 75  # round(3.0 s * 25)
    with pytest.raises(AudioError, match="aud_ave.npy holds synctalk_2d features"):
        motionlab.speech_features(wav, 25.0, tmp_path / "aud_ave.npy")


class BlueReader(torch.nn.Module):
    """A stand-in for a BGR-trained U-Net: it reads channel 0 as blue (turning it over), keeps green and dims red by the
    audio; anything fed RGB comes out visibly wrong."""

    mode = "hubert"

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        reference, masked = image[:, :3], image[:, 3:]
        loudness = audio.mean(dim=(1, 2, 3)).view(-1, 1, 1).sigmoid()
        return torch.stack([1 - reference[:, 0], 0.5 * (reference[:, 1] + masked[:, 1]), reference[:, 2] * loudness], dim=1)


def test_bgr_stand_in_gives_synctalk_frames(talking_clip, tmp_path):
    """Through motionlab's pipeline (synctalk_2d convention, hard paste) a BGR network gives exactly the frames of
    SyncTalk_2D's own loop (BGR reads, bounce from frame 1, zero-padded context, truncation, cubic paste); under
    motionlab's convention (RGB) the same network gives other frames."""
    from benchmarks.synctalk_reference import synctalk_frames
    from motionlab.inference.lipsync import LipSyncPipeline

    rows = np.random.default_rng(0).normal(size=(12, 2048)).astype(np.float32)
    np.save(tmp_path / "aud_hu.npy", rows)  # no manifest: a SyncTalk_2D feature file
    reference = [frame[:, :, ::-1] for frame, *_ in synctalk_frames(BlueReader(), rows, talking_clip)]
    pipeline = LipSyncPipeline(LipSyncPredictor(BlueReader(), convention="synctalk_2d"), batch_size=5, feather=0)
    frames, produced = pipeline.frames(talking_clip, np.zeros(16000, np.float32), tmp_path / "aud_hu.npy")
    produced = list(produced)
    assert frames == len(produced) == len(reference) == 12
    for ours, theirs in zip(produced, reference):
        assert np.array_equal(ours, theirs)
    (tmp_path / "aud_hu.json").write_text(json.dumps({"convention": "motionlab"}))
    rgb = LipSyncPipeline(LipSyncPredictor(BlueReader()), batch_size=5, feather=0)
    _, produced_rgb = rgb.frames(talking_clip, np.zeros(int(12 / 25 * 16000), np.float32), tmp_path / "aud_hu.npy")
    assert np.abs(next(iter(produced_rgb)).astype(int) - reference[0]).max() > 100


def test_init_from_takes_weights_of_the_datas_convention_only(lipsync_checkpoints, tmp_path):
    from conftest import compose_train, lipsync_links
    from hydra.utils import instantiate

    cfg = compose_train(["experiment=lipsync_real_quick", f"data.root={lipsync_checkpoints['clip']}", "data.convention=synctalk_2d",
                         *lipsync_links("lipsync_real_quick", lipsync_checkpoints), f"paths.root_dir={tmp_path}"], tmp_path / "run")
    task = instantiate(cfg.model, loss=cfg.loss)
    assert task.convention.name == "synctalk_2d" and task.predictor_settings()["convention"] == "synctalk_2d"
    with pytest.raises(ValueError, match="motionlab convention, the data is set up for synctalk_2d: set data.convention=motionlab"):
        task.init_from(lipsync_checkpoints["unet"])
    plain = tmp_path / "unet.pth"  # a SyncTalk_2D file: trained in its convention
    torch.save(task.net.state_dict(), plain)
    task.init_from(plain)


def test_random_shift_moves_each_crop_within_bounds():
    from motionlab.tasks.lipsync import random_shift

    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    torch.manual_seed(0)
    shifted = random_shift(images, 2)
    assert shifted.shape == images.shape and torch.equal(random_shift(images, 0), images)
    padded = torch.nn.functional.pad(images, [2] * 4, mode="replicate")
    for i in range(2):  # each output is some 8 x 8 window of its own padded image
        assert any(torch.equal(shifted[i], padded[i, :, y : y + 8, x : x + 8]) for y in range(5) for x in range(5))


def test_mask_is_synctalk_rectangle():
    masked = mask_face(torch.ones(1, 3, 320, 320))
    x, y, w, h = SYNCTALK_MASK
    assert masked[..., y : y + h, x : x + w].sum() == 0 and masked.sum() == 3 * (320 * 320 - w * h)


def test_weight_files_are_checked(lipsync_checkpoints, tmp_path):
    predictor = load_predictor(lipsync_checkpoints["unet"])
    net = predictor.net
    assert isinstance(predictor, LipSyncPredictor) and isinstance(net, LipSyncUNet) and predictor.mode == "ave"
    assert predictor.mask == SYNCTALK_MASK and predictor.audio_encoder is not None  # the encoder travels with the U-Net
    assert predictor.convention.name == "motionlab"  # recorded by the task
    plain = tmp_path / "unet_plain.pth"  # SyncTalk_2D saves a bare state dict
    torch.save(net.state_dict(), plain)
    encoder_file = tmp_path / "audio_visual_encoder.pth"
    torch.save({k.removeprefix("audio_encoder."): v for k, v in predictor.audio_encoder.state_dict().items()}, encoder_file)
    foreign = load_predictor(plain, model="lipsync_unet328_ave", audio_encoder_ckpt=encoder_file)
    assert foreign.net.state_dict().keys() == net.state_dict().keys() and foreign.convention.name == "synctalk_2d"
    assert torch.equal(foreign.audio_encoder.audio_encoder[0].conv_block[0].weight, predictor.audio_encoder.audio_encoder[0].conv_block[0].weight)
    with pytest.raises(CheckpointFormatError, match="arch=NAME"):
        load_predictor(plain)
    with pytest.raises(ValueError, match="audio encoder"):
        load_predictor(plain, model="lipsync_unet328_ave")
    with pytest.raises(WeightMismatchError, match=r"shape mismatches \(\d+\): audio_model"):
        load_model(plain, name="lipsync_unet328_wenet")
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("up5.")}, plain)
    with pytest.raises(WeightMismatchError, match=r"missing keys \(\d+\): up5\."):
        load_model(plain, name="lipsync_unet328_ave")
    # stage 1's run holds the encoder inside the audio-visual model: the encoder variant accepts it
    encoder = create_model("lipsync_audio_encoder_ave", ckpt=lipsync_checkpoints["audio_encoder"])
    assert torch.equal(encoder.audio_encoder[0].conv_block[0].weight, predictor.audio_encoder.audio_encoder[0].conv_block[0].weight)
    assert isinstance(create_model("syncnet328_ave", ckpt=lipsync_checkpoints["syncnet"]), SyncNet)
    with pytest.raises(CheckpointFormatError, match="holds a lipsync_unet328_ave .*not a syncnet328_ave"):
        create_model("syncnet328_ave", ckpt=lipsync_checkpoints["unet"])


def _wav(path, seconds: float) -> None:
    t = np.arange(int(seconds * 16000)) / 16000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32), 16000)


def _streams(path):
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
        return sum(1 for _ in container.decode(video=0)), seconds, (video.codec_context.name, audio.codec_context.name)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_lipsync_cli_writes_video_with_exact_audio(lipsync_checkpoints, tmp_path, runtime):
    template = shutil.copytree(lipsync_checkpoints["clip"], tmp_path / "template")
    for index in range(6, 75):  # a 6-frame template: 0.6 s of speech bounces over it
        (template / "full_body_img" / f"{index}.jpg").unlink()
        (template / "landmarks" / f"{index}.lms").unlink()
    (template / "landmarks" / "4.lms").unlink()  # nearest valid landmarks are used
    wav = tmp_path / "speech.wav"
    _wav(wav, 0.6)
    out = tmp_path / "out.mp4"
    beside = {folder: sorted(folder.rglob("*")) for folder in (lipsync_checkpoints["unet"].parent, template)}
    cache = tmp_path / "cache"
    result = subprocess.run([motionlab_bin("motionlab-lipsync"), f"ckpt={lipsync_checkpoints['unet']}", f"template={template}",
                             f"audio={wav}", f"out={out}", f"runtime={runtime}", "batch_size=4"],
                            capture_output=True, text=True, env={**subprocess_env(tmp_path), "MOTIONLAB_CACHE_DIR": str(cache)}, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # nothing is written beside the user's checkpoint or template: the compiled graph goes to the cache, and the log says where
    assert {folder: sorted(folder.rglob("*")) for folder in beside} == beside
    if runtime == "onnx":
        assert len(list((cache / "onnx").glob("*.onnx"))) == 1 and str(cache / "onnx") in result.stdout + result.stderr
    frames, audio_seconds, codecs = _streams(out)
    assert frames == round(25 * 0.6) and abs(audio_seconds - 0.6) <= 1 / 25 and codecs == ("h264", "aac")
    assert "without landmarks use the nearest" in result.stdout + result.stderr


def test_int8_lipsync_is_gated_by_its_mouth_psnr(lipsync_checkpoints, tmp_path, monkeypatch):
    """precision=int8: the U-Net's graph quantized on the run's own first frames and audio, cached under their hash,
    used with its mouth-region PSNR against fp32 reported; a floor it cannot reach refuses the run (nothing written)
    unless forced; an AVX2 CPU without VNNI gets 7-bit weights; a CPU without int8 SIMD kernels says so and runs fp32;
    int8 needs runtime=onnx."""
    from motionlab.inference import lipsync as lipsync_inference
    from motionlab.utils.errors import InputError
    from motionlab.utils.machine import CpuProfile

    monkeypatch.setenv("MOTIONLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(lipsync_inference, "CALIBRATION_FRAMES", 3)
    wav = tmp_path / "speech.wav"
    _wav(wav, 0.4)
    common = {"ckpt": str(lipsync_checkpoints["unet"]), "audio": str(wav), "template": str(lipsync_checkpoints["clip"]), "runtime": "onnx",
              "precision": "int8"}
    vnni = CpuProfile("test CPU", 2, ("avx2", "avx512f", "avx512_vnni"))
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: vnni)
    summary = lipsync_inference.lipsync_files(**common, out=str(tmp_path / "int8.mp4"))
    assert summary["precision"]["mode"] == "int8" and summary["precision"]["psnr_mouth_db"] >= 40 and summary["frames"] == 10
    assert len(list((tmp_path / "cache" / "onnx").glob("*.int8-*.onnx"))) == 1
    with pytest.raises(InputError, match="below the 500 dB floor"):
        lipsync_inference.lipsync_files(**common, out=str(tmp_path / "refused.mp4"), precision_floor_db=500.0)
    assert not (tmp_path / "refused.mp4").exists()
    forced = lipsync_inference.lipsync_files(**common, out=str(tmp_path / "forced.mp4"), precision_floor_db=500.0, precision_force=True)
    assert "forced" in forced["precision"]["reason"] and len(list((tmp_path / "cache" / "onnx").glob("*.int8-*.onnx"))) == 1  # reused
    # AVX2 without VNNI: a graph of its own with 7-bit weights (the 8-bit path would saturate there)
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("AVX2 CPU", 2, ("avx2", "fma")))
    avx2 = lipsync_inference.lipsync_files(**common, out=str(tmp_path / "avx2.mp4"))
    assert avx2["precision"]["mode"] == "int8" and avx2["precision"]["psnr_mouth_db"] >= 40
    assert len(list((tmp_path / "cache" / "onnx").glob("*.int8-7bit-*.onnx"))) == 1
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("old CPU", 2, ()))
    plain = lipsync_inference.lipsync_files(**common, out=str(tmp_path / "plain.mp4"))
    assert plain["precision"]["mode"] == "fp32" and "no int8 SIMD kernels" in plain["precision"]["reason"]
    with pytest.raises(InputError, match="add runtime=onnx"):
        lipsync_inference.lipsync_files(**{**common, "runtime": "torch"}, out=str(tmp_path / "torch.mp4"))
    # bf16: PyTorch's autocast, the same gate
    monkeypatch.setattr("motionlab.utils.machine.cpu_profile", lambda *a: CpuProfile("bf16 CPU", 2, ("avx512f", "avx512_bf16")))
    bf16 = lipsync_inference.lipsync_files(**{**common, "runtime": "torch", "precision": "bf16"}, out=str(tmp_path / "bf16.mp4"))
    assert bf16["precision"]["mode"] == "bf16" and 20 < bf16["precision"]["psnr_mouth_db"] and bf16["frames"] == 10
    with pytest.raises(InputError, match="add runtime=torch"):
        lipsync_inference.lipsync_files(**{**common, "precision": "bf16"}, out=str(tmp_path / "bf16_onnx.mp4"))


def test_onnx_export_parity_and_reference_outputs(lipsync_checkpoints, tmp_path):
    out, reference = tmp_path / "unet.onnx", tmp_path / "reference"
    result = subprocess.run([motionlab_bin("motionlab-export"), "onnx", f"ckpt={lipsync_checkpoints['unet']}", f"out={out}",
                             f"template={lipsync_checkpoints['clip']}", f"reference_outputs={reference}"],
                            capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image ['batch', 6, 320, 320]" in result.stdout and "'real'" in result.stdout
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = {name: np.load(reference / f"{name}.npy") for name in ("image", "audio")}
    assert inputs["image"].shape[0] == 2  # real frames of the template
    np.testing.assert_allclose(session.run(None, inputs)[0], np.load(reference / "face.npy"), atol=1e-4)
    batch3 = session.run(None, {k: np.concatenate([v, v[:1]]) for k, v in inputs.items()})[0]  # dynamic batch
    assert batch3.shape == (3, 3, 320, 320)
    encoder = subprocess.run([motionlab_bin("motionlab-export"), "onnx", f"ckpt={lipsync_checkpoints['unet']}", f"out={tmp_path / 'audio.onnx'}",
                              "part=audio_encoder"], capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=tmp_path, timeout=600)
    assert encoder.returncode == 0 and "mel ['batch', 1, 80, 16]" in encoder.stdout, encoder.stderr[-3000:]


def test_onnx_export_uses_the_checkpoints_mask(lipsync_checkpoints, tmp_path):
    """A U-Net trained with a non-default mask: the exported reference inputs blank exactly that rectangle."""
    from motionlab.inference.export import export_predictor_onnx

    payload = torch.load(lipsync_checkpoints["unet"], weights_only=True)
    payload["motionlab"]["predictor"]["mask"] = [40, 150, 240, 160]
    ckpt = tmp_path / "masked.ckpt"
    torch.save(payload, ckpt)
    report = export_predictor_onnx(str(ckpt), str(tmp_path / "unet.onnx"), template=str(lipsync_checkpoints["clip"]),
                                 reference_outputs=str(tmp_path / "ref"))
    assert report["parity"]["real"] <= 1e-4
    image = np.load(tmp_path / "ref" / "image.npy")  # (2, 6, 320, 320): reference | masked current frame
    current = image[:, 3:]
    assert (current[..., 150:310, 40:280] == 0).all() and current[..., 10:140, 10:300].max() > 0
    assert np.array_equal(current[..., :150, :], image[:, :3, :150, :])  # outside the mask: the frame itself
