"""The toy world: deterministic, in the seed layout, with ground truth that matches the pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import read_rgb

from motionlab.data.synthetic import (
    KEYPOINT_NAMES,
    MOTION_FIELDS,
    ToyWorldSpec,
    ensure_toy_world,
    generate_toy_world,
    keypoints,
    neutral_motion,
    render_frame,
    sample_style,
)


def test_seed_layout_on_disk(toy_world):
    manifest = json.loads((toy_world / "toy_world.json").read_text())
    assert manifest["identities"] == 8 and manifest["keypoint_names"] == list(KEYPOINT_NAMES)
    for index in range(8):
        name = f"id_{index:04d}"
        assert read_rgb(toy_world / f"{name}.png").shape == (32, 32, 3)
        clip = toy_world / f"{name}_video"
        assert sorted(p.name for p in clip.glob("*.png")) == [f"{t:04d}.png" for t in range(8)]
        points = np.load(clip / "keypoints.npy")
        assert points.shape == (8, len(KEYPOINT_NAMES), 2) and points.dtype == np.float32
        motion = np.load(clip / "motion.npz")
        assert all(motion[field].shape == (8,) for field in MOTION_FIELDS)
        assert motion["portrait_keypoints"].shape == (len(KEYPOINT_NAMES), 2)


def test_generation_is_deterministic_by_seed(tmp_path):
    spec = ToyWorldSpec(identities=2, frames=3, size=24, seed=7)
    a, b = generate_toy_world(tmp_path / "a", spec), generate_toy_world(tmp_path / "b", spec)
    c = generate_toy_world(tmp_path / "c", ToyWorldSpec(identities=2, frames=3, size=24, seed=8))
    for rel in ("id_0000.png", "id_0001_video/0002.png", "id_0001_video/keypoints.npy"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert not np.array_equal(read_rgb(a / "id_0000.png"), read_rgb(c / "id_0000.png"))


def test_keypoints_sit_on_the_drawn_features():
    rng = np.random.default_rng(3)
    style = sample_style(rng)
    frame = {name: float(v[0]) for name, v in neutral_motion().items()}
    frame.update(tx=0.1, ty=-0.05, rotation=0.3, scale=1.1)
    image = render_frame(style, frame, 128).astype(float)
    points = keypoints(style, frame, 128)
    names = list(KEYPOINT_NAMES)
    for eye in ("left_eye", "right_eye"):  # open eyes: the keypoint is on the black pupil
        x, y = np.round(points[names.index(eye)]).astype(int)
        assert image[y, x].max() < 40, f"{eye} at {(x, y)} is not on the pupil: {image[y, x]}"
    x, y = np.round(points[names.index("nose_tip")]).astype(int)
    skin = np.array(style.skin) * 255
    assert np.abs(image[y, x] - 0.6 * skin).max() < 25  # the nose is drawn in darker skin


def test_ensure_toy_world_caches(tmp_path):
    spec = ToyWorldSpec(identities=2, frames=2, size=16)
    first = ensure_toy_world(tmp_path, spec)
    stamp = (first / "id_0000.png").stat().st_mtime_ns
    assert ensure_toy_world(tmp_path, spec) == first
    assert (first / "id_0000.png").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".toy_world_tmp_*"))
    other = ensure_toy_world(tmp_path, ToyWorldSpec(identities=2, frames=2, size=16, seed=1))
    assert other != first


def test_synth_cli(tmp_path):
    from conftest import run_cli

    out = tmp_path / "world"
    result = run_cli("motionlab-data", "synth", f"out={out}", "identities=2", "frames=3", "size=20", "seed=5", cwd=tmp_path)
    assert result.returncode == 0 and "wrote 2 identities x 3 frames at 20px" in result.stdout, result.stderr[-2000:]
    assert (out / "id_0001_video" / "0002.png").is_file()
    again = run_cli("motionlab-data", "synth", f"out={out}", "identities=2", cwd=tmp_path)
    assert again.returncode != 0 and "not empty" in again.stderr
    assert not (tmp_path / "outputs").exists()  # data commands write only what they are asked to


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="size"):
        ToyWorldSpec(size=8)
    with pytest.raises(ValueError, match="identities"):
        ToyWorldSpec(identities=0)


def test_human_renderer_writes_a_second_domain(tmp_path):
    human = ensure_toy_world(tmp_path, ToyWorldSpec(identities=2, frames=3, size=32, renderer="human"))
    character = ensure_toy_world(tmp_path, ToyWorldSpec(identities=2, frames=3, size=32))
    assert human != character and ToyWorldSpec().cache_key() == "c622d3f151a2"  # the default world keeps its cache key
    points = np.load(human / "id_0000_video" / "landmarks.npy")
    frame = read_rgb(human / "id_0000_video" / "0001.png")
    assert points.shape == (3, 68, 2) and frame.shape == (32, 32, 3)
    assert not (human / "id_0000_video" / "keypoints.npy").exists()  # no descriptor ground truth for another face
    assert not np.array_equal(frame, read_rgb(character / "id_0000_video" / "0001.png"))
    with pytest.raises(ValueError, match="renderer must be one of"):
        ToyWorldSpec(renderer="painting")
