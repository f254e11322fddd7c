"""The data layer on real files: every layout, splits, frame sampling, augmentation, bad clips."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import count_video_frames, read_rgb

from motionlab.data.augment import PairedAugmentation
from motionlab.data.datamodule import EpochSeededRandomSampler, PortraitVideoDataModule, TargetDataModule
from motionlab.data.datasets import PortraitVideoDataset, discover_clips, split_identities, uniform_frame_indices
from motionlab.data.video_io import ClipError, list_frame_files, write_video
from motionlab.utils.errors import InputError


def _frames(world, name):
    return [read_rgb(p) for p in list_frame_files(world / f"{name}_video")]


@pytest.fixture(scope="module")
def video_folder(toy_world, tmp_path_factory):
    """The toy clips re-encoded as H.264 mp4 files (one identity per file)."""
    folder = tmp_path_factory.mktemp("videos")
    for index in range(4):
        name = f"id_{index:04d}"
        write_video(folder / f"{name}.mp4", _frames(toy_world, name), fps=25, crf=10)
    return folder


@pytest.fixture(scope="module")
def frame_folders(toy_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for index in range(4):
        name = f"id_{index:04d}"
        shutil.copytree(toy_world / f"{name}_video", folder / name, ignore=shutil.ignore_patterns("*.npy", "*.npz"))
    return folder


def test_seed_layout_samples(toy_world):
    layout, records = discover_clips(toy_world)
    assert layout == "seed" and len(records) == 8
    dataset = PortraitVideoDataset(records[:2], temporal_max_stride=2)
    assert len(dataset) == 16
    sample = dataset[3]
    assert sample["portrait"].shape == sample["driver"].shape == sample["driver_next"].shape == (3, 32, 32)
    assert torch.equal(sample["portrait"], torch.from_numpy(read_rgb(records[0].portrait)).permute(2, 0, 1) / 255.0)
    expected = read_rgb(records[0].clip / f"{sample['frame_index']:04d}.png")
    assert torch.equal(sample["driver"], torch.from_numpy(expected).permute(2, 0, 1) / 255.0)
    assert 1 <= abs(sample["next_index"] - sample["frame_index"]) <= 2
    gt = np.load(records[0].clip / "keypoints.npy")[sample["frame_index"]]
    assert torch.allclose(sample["driver_keypoints"], torch.from_numpy(gt))


def test_resize_rescales_keypoints(toy_world):
    _, records = discover_clips(toy_world)
    full, half = PortraitVideoDataset(records[:1]), PortraitVideoDataset(records[:1], image_size=16)
    assert half[0]["driver"].shape == (3, 16, 16)
    assert torch.allclose((half[0]["driver_keypoints"] + 0.5) * 2, full[0]["driver_keypoints"] + 0.5)


def test_video_layout_decodes_mp4(video_folder, toy_world):
    layout, records = discover_clips(video_folder)
    assert layout == "videos" and [r.identity for r in records] == [f"id_{i:04d}" for i in range(4)]
    assert count_video_frames(records[0].clip) == 8
    dataset = PortraitVideoDataset(records, source_frame="first")
    sample = dataset[5]
    assert sample["driver"].shape == (3, 32, 32) and sample["portrait_index"] == 0
    original = read_rgb(toy_world / "id_0000_video" / f"{sample['frame_index']:04d}.png") / 255.0
    decoded = sample["driver"].permute(1, 2, 0).numpy()
    assert np.abs(decoded - original).mean() < 0.03  # lossy H.264 at crf 10, but the same picture


def test_frames_layout(frame_folders):
    layout, records = discover_clips(frame_folders)
    assert layout == "frames" and len(records) == 4
    dataset = PortraitVideoDataset(records, source_frame="random")
    assert 0 <= dataset[0]["portrait_index"] < 8 and "driver_keypoints" not in dataset[0]


def test_unreadable_and_empty_clips_are_named(video_folder, frame_folders, tmp_path):
    broken = tmp_path / "videos"
    shutil.copytree(video_folder, broken)
    (broken / "zz_broken.mp4").write_bytes(b"this is not a video" * 10)
    _, records = discover_clips(broken)
    with pytest.raises(ClipError, match="zz_broken.mp4"):
        PortraitVideoDataset(records)
    dataset = PortraitVideoDataset(records, on_bad_clip="skip")
    assert len(dataset.records) == 4 and [p.name for p, _ in dataset.skipped] == ["zz_broken.mp4"]

    empty = tmp_path / "frames"
    shutil.copytree(frame_folders, empty)
    (empty / "empty_clip").mkdir()
    _, records = discover_clips(empty)
    with pytest.raises(ClipError, match="empty_clip.*holds no images"):
        PortraitVideoDataset(records)


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_clips(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="layout"):
        discover_clips(tmp_path, layout="tiktok")
    with pytest.raises(ClipError, match="holds no clips"):
        discover_clips(tmp_path)


def test_split_is_identity_disjoint_and_seeded():
    ids = [f"id_{i}" for i in range(20)]
    split = split_identities(ids, 0.2, 0.1, seed=3)
    assert len(split["val"]) == 4 and len(split["test"]) == 2 and len(split["train"]) == 14
    assert not set(split["train"]) & set(split["val"]) and not set(split["val"]) & set(split["test"])
    assert split == split_identities(list(reversed(ids)), 0.2, 0.1, seed=3)
    assert split != split_identities(ids, 0.2, 0.1, seed=4)
    with pytest.raises(ValueError, match="too few"):
        split_identities(ids[:2], 0.5, 0.4)


def test_uniform_frame_sampling():
    assert uniform_frame_indices(10, None).tolist() == list(range(10))
    assert uniform_frame_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_frame_indices(3, 8).tolist() == [0, 1, 2]


def test_epoch_seeded_sampler_depends_only_on_epoch():
    a, b = EpochSeededRandomSampler(50, seed=1), EpochSeededRandomSampler(50, seed=1)
    a.set_epoch(3)
    list(b)  # iterating does not advance anything
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(4)
    assert list(a) != list(b)


def test_paired_augmentation_is_shared_within_a_sample():
    torch.manual_seed(0)
    batch = {key: torch.rand(6, 3, 8, 8) for key in ("portrait", "driver", "driver_next")}
    batch["driver_keypoints"] = torch.rand(6, 5, 2) * 7
    flipped = PairedAugmentation(hflip=1.0, brightness=0, contrast=0, saturation=0, hue=0)(batch)
    for key in ("portrait", "driver", "driver_next"):
        assert torch.allclose(flipped[key], batch[key].flip(-1))
    assert torch.allclose(flipped["driver_keypoints"][..., 0], 7 - batch["driver_keypoints"][..., 0])
    jittered = PairedAugmentation(hflip=0.0, brightness=0.3, contrast=0, saturation=0, hue=0)(
        {key: torch.full((4, 3, 8, 8), 0.5) for key in ("portrait", "driver", "driver_next")}
    )
    shift = jittered["portrait"][:, 0, 0, 0]
    assert torch.allclose(jittered["driver"][:, 0, 0, 0], shift) and shift.unique().numel() > 1
    with pytest.raises(ValueError, match="hflip"):
        PairedAugmentation(hflip=2.0)


def test_datamodule_batches_and_workers(toy_world):
    datamodule = PortraitVideoDataModule(root=str(toy_world), image_size=32, val_fraction=0.25, batch_size=4, num_workers=2)
    datamodule.setup("fit")
    assert set(datamodule.splits["val"]).isdisjoint(datamodule.splits["train"])
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["driver"].shape == (4, 3, 32, 32) and len(batch["identity"]) == 4
    assert all(identity in datamodule.splits["train"] for identity in batch["identity"])
    val = next(iter(datamodule.val_dataloader()))
    assert all(identity in datamodule.splits["val"] for identity in val["identity"])
    assert datamodule.datasets["test"] is datamodule.datasets["val"]


def test_datamodule_needs_exactly_one_source(toy_world):
    with pytest.raises(ValueError, match="exactly one"):
        PortraitVideoDataModule()
    with pytest.raises(ValueError, match="exactly one"):
        PortraitVideoDataModule(root=str(toy_world), toy_world={"identities": 2})


def test_cached_descriptors_follow_a_flip_and_ignore_colour_changes():
    """Two dots, keypoint 0 on the image-left one: in a mirrored face keypoint 0 is the mirror of keypoint 1's dot."""
    image = torch.zeros(1, 3, 9, 9)
    image[..., 4, 1] = image[..., 2, 6] = 1.0
    normalised = lambda pixels: torch.tensor(pixels) * 2 / 8 - 1  # noqa: E731
    batch = {"portrait": image, "driver": image.clone(), "driver_next": image.clone(), "driver_descriptors": normalised([[[1.0, 4.0], [6.0, 2.0]]])}
    flipped = PairedAugmentation(hflip=1.0, brightness=0, contrast=0, saturation=0, hue=0, descriptor_mirror=[1, 0])(batch)
    assert torch.allclose(flipped["driver_descriptors"], normalised([[[2.0, 2.0], [7.0, 4.0]]]))
    assert flipped["driver"][0, 0, 2, 2] == 1 and flipped["driver"][0, 0, 4, 7] == 1  # where the image put the dots
    grey = {**batch, **{key: image * 0.5 + 0.25 for key in ("portrait", "driver", "driver_next")}}
    recoloured = PairedAugmentation(hflip=0.0, brightness=0.3, contrast=0.3, saturation=0, hue=0)(grey)
    assert not torch.equal(recoloured["driver"], grey["driver"]) and torch.equal(recoloured["driver_descriptors"], batch["driver_descriptors"])
    with pytest.raises(ValueError, match="descriptor_mirror"):
        PairedAugmentation(hflip=0.5)(batch)
    with pytest.raises(ValueError, match="permutation"):
        PairedAugmentation(descriptor_mirror=[0, 0])


def test_target_datamodule_splits_one_identity_in_time(toy_world):
    datamodule = TargetDataModule(identity="id_0002", root=str(toy_world), layout="seed", image_size=32, train_fraction=0.5,
                                  max_frames=3, repeats=4, batch_size=2)
    datamodule.setup()
    train, held_out = datamodule.datasets["train"], datamodule.datasets["val"]
    train_frames = {t for _, t in train.index}
    assert len(train_frames) == 3 and max(train_frames) < 4 <= min(t for _, t in held_out.index)  # 8 frames: 0-3 | 4-7
    assert len(datamodule.train_dataloader().sampler) == 12  # 4 shuffled passes per epoch
    for item in range(len(train)):
        sample = train[item]
        assert sample["next_index"] < 4 and sample["identity"] == "id_0002"  # neighbours never leak into held-out frames
    _, frames = held_out.clip_frames(0)
    assert frames.shape[0] == 4
    with pytest.raises(ValueError, match="is not among"):
        TargetDataModule(identity="nobody", root=str(toy_world), layout="seed").setup()


def test_face_labels_follow_the_toy_motion_and_the_mirror(toy_world, tmp_path):
    """data.face_labels serves each driver frame's 68 landmarks (pixels of the served size) and head pose: the roll is
    the clip's rotation in degrees, the eye landmarks surround the named eye keypoints; a mirrored batch swaps the
    eyes and negates yaw and roll; a layout without labels is an error naming the clip."""
    from motionlab.data.datamodule import collate

    _, records = discover_clips(toy_world)
    dataset = PortraitVideoDataset(records[:2], image_size=64, face_labels=True)
    sample = dataset[3]
    clip, t = dataset.records[0].clip, sample["frame_index"]
    with np.load(clip / "motion.npz") as motion:
        roll = np.degrees(motion["rotation"][t])
    assert sample["driver_head_pose"].tolist() == pytest.approx([0.0, 0.0, roll], abs=1e-4)
    landmarks, keypoints = sample["driver_landmarks"], sample["driver_keypoints"]
    assert landmarks.shape == (68, 2)
    eyes = torch.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0)])
    assert torch.allclose(eyes, keypoints[:2], atol=1.0)  # KEYPOINT_NAMES start with left_eye, right_eye

    batch = collate([sample, dataset[5]])
    flipped = PairedAugmentation(hflip=1.0, brightness=0, contrast=0, saturation=0, hue=0)(batch)
    assert torch.allclose(flipped["driver_landmarks"][:, 36:42].mean(1)[:, 0], 63 - batch["driver_landmarks"][:, 42:48].mean(1)[:, 0], atol=1e-4)
    assert torch.allclose(flipped["driver_head_pose"], batch["driver_head_pose"] * torch.tensor([1.0, -1.0, -1.0]))

    shutil.copytree(clip, tmp_path / clip.name)
    shutil.copy(toy_world / "id_0000.png", tmp_path)
    (tmp_path / clip.name / "motion.npz").unlink()
    with pytest.raises(InputError, match=r"data.face_labels: clip .*id_0000_video has no face labels .*motionlab-data face-labels"):
        PortraitVideoDataset(discover_clips(tmp_path)[1], image_size=64, face_labels=True)[0]
