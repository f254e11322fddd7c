"""Wav2Lip trained under motionlab: its 5-frame windows from talking clips, and the generator trained with the expert
SyncNet's loss from a release-layout lipsync_expert.pth, then run by motionlab-lipsync from the run's checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_train, face_video

from motionlab.data.lipsync import TalkingClip, Wav2LipDataset, temporal_split, wav2lip_face_box
from motionlab.models import create_model
from motionlab.train import train


def test_face_box_and_windows(talking_clip):
    """The box is the landmarks' extent with the release's 10 px below the chin, clipped to the frame; a sample is 5
    consecutive crops (BGR), a reference window at least 5 frames away, each frame's mel window and the window's own."""
    points = np.array([[10.2, 20.7], [50.5, 30.0], [30.0, 119.5]])
    assert wav2lip_face_box(points, (128, 128)) == (20, 128, 10, 51)
    clip = TalkingClip(talking_clip)
    train_frames, _ = temporal_split(len(clip), 0.25)
    dataset = Wav2LipDataset([clip], [train_frames], random=False)
    sample = dataset[3]
    assert sample["faces"].shape == (5, 3, 96, 96) and sample["reference"].shape == (5, 3, 96, 96)
    assert sample["mels"].shape == (5, 1, 80, 16) and torch.equal(sample["sync_mel"], clip.mel[3]) and torch.equal(sample["mels"][4], clip.mel[7])
    assert abs(dataset.items[3][1] - int(np.argmax([torch.equal(sample["reference"][0], c) for c in dataset.crops(0)]))) >= 5
    from motionlab.data.talking import resize
    from motionlab.data.video_io import read_image

    image = read_image(clip.frame_files[4])
    y0, y1, x0, x1 = wav2lip_face_box(clip.landmarks[4], image.shape[:2])
    expected = torch.from_numpy(resize(image[y0:y1, x0:x1], 96, 96, "linear")[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    assert torch.allclose(sample["faces"][1], expected, atol=1e-6)


def test_training_with_the_expert_syncnet_then_lipsync(talking_clip, tmp_path):
    """Two steps with loss.sync > 0 through a release-layout expert file (random weights: the structure is what is
    tested), every term logged; the run's checkpoint then lip-syncs a video through motionlab-lipsync's Wav2Lip path."""
    torch.manual_seed(0)
    expert = create_model("syncnet_wav2lip")
    torch.save({"state_dict": {f"module.{k}": v for k, v in expert.state_dict().items()}, "global_step": 0}, tmp_path / "lipsync_expert.pth")
    cfg = compose_train(["experiment=lipsync_wav2lip_quick", "logger=none", f"+data.root={talking_clip}", "data.toy_talking=null",
                         f"model.syncnet={{_target_: motionlab.models.create_model, name: syncnet_wav2lip, ckpt: {tmp_path / 'lipsync_expert.pth'}}}",
                         "loss.sync=0.03", "loss.l1=0.97", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "data.batch_size=2",
                         f"paths.root_dir={tmp_path}"], tmp_path / "run")
    metrics, objects = train(cfg)
    assert {"train/l1", "train/sync", "val/sync_prob", "val/mouth_l1"} <= set(metrics)
    task = objects["model"]
    assert all(not p.requires_grad for p in task.syncnet.parameters())
    from motionlab.inference.lipsync import lipsync_files

    video = face_video(tmp_path / "astronaut.mp4", frames=12)  # a real face, which dlib finds (the toy cartoon it does not)
    summary = lipsync_files(str(tmp_path / "run" / "checkpoints" / "last.ckpt"), str(talking_clip / "aud.wav"), str(tmp_path / "out.mp4"),
                            video=str(video), runtime="torch")
    assert summary["frames"] > 0 and summary["face_detector"] == "dlib_hog"


def test_sync_loss_needs_the_expert():
    from motionlab.losses.wav2lip import Wav2LipLoss
    from motionlab.tasks.wav2lip import Wav2LipTask

    with pytest.raises(Exception, match="lipsync_expert.pth"):
        Wav2LipTask(create_model("wav2lip96"), Wav2LipLoss(sync=0.03), optimizer=torch.optim.Adam)
