"""MuseTalk trained under motionlab: its samples (MuseTalk's crops, Whisper input), the training-time audio context equal
to inference's, a run's checkpoint through motionlab-lipsync, and a speaker LoRA that trains and merges."""

from __future__ import annotations

import numpy as np
import torch
from conftest import compose_train, face_video

from motionlab.data.lipsync import MuseTalkDataset, TalkingClip, temporal_split
from motionlab.data.video_io import read_image
from motionlab.models import create_model, load_model
from motionlab.models.musetalk import face_crops, landmark_face_box, mouth_box
from motionlab.tasks import load_predictor
from motionlab.train import train


def test_samples_and_audio_context_match_inference(talking_clip, musetalk_checkpoint):
    """A sample's crop is MuseTalk's box (10 px below the chin) resized to 256; the task's audio context of a frame is
    the inference path's window for that frame (the same Whisper encoder, padding and start)."""
    clip = TalkingClip(talking_clip)
    frames, _ = temporal_split(len(clip), 0.3)
    dataset = MuseTalkDataset([clip], [frames], fps=25.0, random=False)
    sample = dataset[5]
    image = read_image(clip.frame_files[5])
    x1, y1, x2, y2 = landmark_face_box(clip.landmarks[5])
    expected = torch.from_numpy(face_crops([image], [(x1, y1, x2, min(y2 + 10, image.shape[0]))])[0]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(sample["face"][0], expected) and sample["whisper_mel"].shape == (80, 3000)
    assert sample["audio_start"].tolist() == [10] and sample["audio_frames"] == 150  # frame 5 at 25 fps; 3 s of audio
    windows5 = MuseTalkDataset([clip], [frames], fps=25.0, random=False, frames=5)
    sample5 = windows5[5]
    assert sample5["face"].shape == (5, 3, 256, 256) and sample5["audio_start"].tolist() == [10, 12, 14, 16, 18]
    assert torch.equal(sample5["face"][1], dataset[6]["face"][0]) and torch.equal(sample5["sync_mel"], clip.mel[5])
    assert len(windows5) == len(dataset) - 4

    predictor = load_predictor(musetalk_checkpoint)
    from motionlab.data.datamodule import collate
    from motionlab.tasks.musetalk import MuseTalkTask

    task = MuseTalkTask(predictor.net, loss=None, optimizer=torch.optim.Adam)
    batch = collate([dataset[i] for i in (0, 5, 30)])
    context = task.audio_context(batch)
    windows = predictor.audio_windows(clip.wav(), 25.0)
    assert torch.allclose(context, windows[[0, 5, 30]], atol=1e-5)


def test_a_trained_checkpoint_lipsyncs_and_a_speaker_lora_trains_and_merges(musetalk_checkpoint, talking_clip, tmp_path):
    from motionlab.inference.export import merge_lora_checkpoint
    from motionlab.inference.lipsync import lipsync_files

    video = face_video(tmp_path / "face.mp4", frames=6)  # a real face, which dlib finds
    summary = lipsync_files(str(musetalk_checkpoint), str(talking_clip / "aud.wav"), str(tmp_path / "out.mp4"), video=str(video), runtime="torch")
    assert summary["frames"] == 90 and summary["runtime"] == "torch"  # 3 s at face_video's 30 fps

    cfg = compose_train(["experiment=lora_musetalk_speaker", "logger=none", f"init_ckpt={musetalk_checkpoint}", "trainer.max_epochs=1",
                         "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "data.toy_talking.seconds=3", "data.toy_talking.size=128",
                         "data.batch_size=2", "data.eval_batch_size=4", f"paths.root_dir={tmp_path}"], tmp_path / "lora")
    metrics, _ = train(cfg)
    assert {"before/val/mouth_l1", "val/mouth_l1", "train/loss"} <= set(metrics)
    adapters = tmp_path / "lora" / "checkpoints" / "last.ckpt"
    merged = merge_lora_checkpoint(adapters, tmp_path / "merged.ckpt")
    net = load_model(merged["out"]).eval()
    assert not any("lora" in key for key in net.state_dict())
    unmerged = load_predictor(adapters).net.eval()
    torch.manual_seed(0)
    latents, audio = torch.randn(1, 8, 32, 32), torch.randn(1, net.context_length, net.context_dim)
    with torch.no_grad():
        assert torch.allclose(net(latents, audio), unmerged(latents, audio), atol=1e-4)
        base = load_model(musetalk_checkpoint).eval()
        assert not torch.allclose(base(latents, audio), unmerged(latents, audio), atol=1e-6)  # the adapters trained
    assert np.isfinite(metrics["val/mouth_l1"])


def test_mouth_box_rule():
    """The lip points mapped into the 256 crop, x padded by 10, a box half as tall as wide around the lips' centre."""
    points = np.zeros((68, 2))
    points[48:67] = [[40, 60], [60, 64], [50, 68]] * 6 + [[50, 62]]
    assert mouth_box(points, (0, 0, 128, 128)) == (70, 113, 130, 143)  # x 80..120 -> 70..130; centre 128, height 30


def test_stage2_trains_the_critics_and_the_sync_term(musetalk_checkpoint, talking_clip, tmp_path):
    """Two stage-2 steps on 5-frame windows with both critics and a release-layout expert SyncNet (random weights: the
    structure is what is tested): every term logged, the critics and the U-Net moved, the expert frozen."""
    torch.manual_seed(0)
    expert = create_model("syncnet_wav2lip")
    torch.save({"state_dict": {f"module.{k}": v for k, v in expert.state_dict().items()}}, tmp_path / "lipsync_expert.pth")
    cfg = compose_train(["experiment=musetalk_stage2_quick", "logger=none", f"init_ckpt={musetalk_checkpoint}", f"+data.root={talking_clip}",
                         "data.toy_talking=null", "data.val_fraction=0.3", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                         "data.eval_batch_size=2", "validate_before_training=false",
                         f"model.syncnet={{_target_: motionlab.models.create_model, name: syncnet_wav2lip, ckpt: {tmp_path / 'lipsync_expert.pth'}}}",
                         "loss.sync=0.05", f"paths.root_dir={tmp_path}"], tmp_path / "run")
    metrics, objects = train(cfg)
    assert {"train/gan", "train/mouth_gan", "train/feature_matching", "train/sync", "train/critic_discriminator", "val/mouth_l1"} <= set(metrics)
    task = objects["model"]
    assert all(not p.requires_grad for p in task.syncnet.parameters())
    fresh = create_model("musetalk_discriminator", block_expansion=8)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), task.discriminator.state_dict().values()))
    base = load_model(musetalk_checkpoint)
    trained = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert any(not torch.equal(a, b) for a, b in zip(base.unet.state_dict().values(), trained.unet.state_dict().values()))
