"""Domain adapters: the loss terms' known answers, the adapter checkpoint's descriptor binding, landmark-driven
animation from a real clip through the CLI, and the cross-domain evaluation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED, count_video_frames, run_cli
from torch import nn

from motionlab.losses.adapter import AdapterLoss, gaussian_mmd
from motionlab.models import CheckpointFormatError, create_model
from motionlab.tasks.adapter_predictor import landmark_windows, load_adapter_predictor
from motionlab.utils.checkpoint import atomic_torch_save, load_checkpoint

P = 68


class _LinearAdapter(nn.Module):
    """Landmark displacements of the window's centre frame -> keypoint displacements through a matrix (K = P)."""

    window, num_landmarks, num_kp = 1, P, P

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = matrix

    def forward(self, window: torch.Tensor, reference: torch.Tensor, keypoints: torch.Tensor) -> dict:
        value = (window[:, 0].flatten(1) @ self.matrix.T).view(-1, P, 2)
        return {"value": value, "jacobian": torch.eye(2).expand(value.shape[0], P, 2, 2)}


class _LinearInverse(nn.Module):
    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = matrix

    def forward(self, value: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return (value.flatten(1) @ self.matrix.T).view(-1, P, 2)


def _batch(b: int = 6, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"landmarks": torch.randn(b, 1, P, 2, generator=generator), "reference_landmarks": torch.randn(b, P, 2, generator=generator),
            "descriptor_window": torch.randn(b, 1, P, 2, generator=generator), "descriptor_delta": torch.randn(b, P, 2, generator=generator),
            "reference_descriptors": torch.randn(b, P, 2, generator=generator)}


def _cycle(adapter: nn.Module, inverse: nn.Module, batch: dict) -> float:
    loss = AdapterLoss(cycle=1.0).bind(adapter=adapter, inverse=inverse)
    outputs = {"current": adapter(batch["landmarks"], batch["reference_landmarks"], batch["reference_descriptors"])}
    return float(loss(outputs, batch)["cycle"])


def test_cycle_loss_is_zero_for_an_exact_inverse_pair_and_positive_otherwise():
    matrix = torch.linalg.qr(torch.randn(2 * P, 2 * P, generator=torch.Generator().manual_seed(1)))[0] * 0.3
    matrix = matrix + torch.eye(2 * P)  # well-conditioned, invertible
    batch = _batch()
    exact = _cycle(_LinearAdapter(matrix), _LinearInverse(torch.linalg.inv(matrix)), batch)
    assert exact == pytest.approx(0.0, abs=1e-5)
    assert _cycle(_LinearAdapter(matrix), _LinearInverse(torch.linalg.inv(matrix) * 1.1), batch) > 0.05
    assert _cycle(_LinearAdapter(matrix), _LinearInverse(torch.eye(2 * P)), batch) > 0.05


def test_contrastive_loss_is_lower_for_aligned_than_for_shuffled_pairs():
    batch = _batch(b=16)
    target = batch["descriptor_delta"]
    loss = AdapterLoss(contrastive=1.0)
    aligned = {"value": target + 0.1 * torch.randn_like(target), "jacobian": torch.eye(2).expand(16, P, 2, 2)}
    shuffled = {"value": aligned["value"][torch.roll(torch.arange(16), 1)], "jacobian": aligned["jacobian"]}
    assert float(loss({"current": aligned}, batch)["contrastive"]) < 0.1 < float(loss({"current": shuffled}, batch)["contrastive"])


def test_distribution_term_separates_shifted_samples():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=generator), torch.randn(64, 8, generator=generator)
    same, shifted = float(gaussian_mmd(x, y)), float(gaussian_mmd(x, y + 1.0))
    assert abs(same) < 0.05 < shifted


def test_relative_and_smoothness_terms_have_known_answers():
    adapter = create_model("landmark_adapter_mlp", num_kp=4, hidden=16)  # zero-initialised head: no motion, identity Jacobians
    batch = {**_batch(), "descriptor_delta": torch.zeros(6, 4, 2), "reference_descriptors": torch.rand(6, 4, 2)}
    outputs = {name: adapter(batch["landmarks"], batch["reference_landmarks"], batch["reference_descriptors"]) for name in ("prev", "current", "next")}
    terms = AdapterLoss(relative=1.0, smoothness=1.0, keypoint=1.0).bind(adapter=adapter)(outputs, batch)
    assert float(terms["relative"]) == 0.0 and float(terms["smoothness"]) == 0.0 and float(terms["keypoint"]) == 0.0
    ramp = {name: {"value": torch.full((6, 4, 2), float(i) ** 2), "jacobian": outputs["current"]["jacobian"]} for i, name in enumerate(("prev", "current", "next"))}
    assert float(AdapterLoss(smoothness=1.0)(ramp, batch)["smoothness"]) == pytest.approx(2.0)


def test_guided_keypoint_motion_carries_landmark_motion_into_the_portraits_face_frame():
    from motionlab.losses.landmarks import GUIDANCE_LANDMARKS, guided_keypoint_motion

    motion = torch.zeros(1, P, 2)
    motion[0, GUIDANCE_LANDMARKS[8]] = torch.tensor([0.0, 0.2])  # the upper lip drops by 0.2 inter-ocular distances
    level = torch.zeros(1, 10, 2)
    level[0, 3:5, 0] = 0.5  # the right eye's corners 0.5 to the right of the left eye's: inter-ocular distance 0.5
    assert guided_keypoint_motion(motion, level)[0, 8].tolist() == pytest.approx([0.0, 0.1])
    turned = torch.zeros(1, 10, 2)
    turned[0, 3:5, 1] = 0.5  # the eye line turned a quarter clockwise on screen: "down" in the face is -x on screen
    assert guided_keypoint_motion(motion, turned)[0, 8].tolist() == pytest.approx([-0.1, 0.0])
    with pytest.raises(ValueError, match="keypoints 0-4"):
        guided_keypoint_motion(motion, torch.zeros(1, 4, 2))


def test_correspondence_term_is_scale_free_and_penalises_the_mirror():
    from motionlab.losses.landmarks import guided_keypoint_motion

    batch = {**_batch(b=8), "reference_descriptors": torch.rand(8, 10, 2)}
    prior = guided_keypoint_motion(batch["landmarks"][:, 0], batch["reference_descriptors"])
    loss = AdapterLoss(correspondence=1.0)

    def term(value: torch.Tensor) -> float:
        return float(loss({"current": {"value": value, "jacobian": torch.eye(2).expand(8, 10, 2, 2)}}, batch)["correspondence"])

    assert term(3.0 * prior) == pytest.approx(0.0, abs=1e-6)  # any gain: the other terms set it
    assert term(-prior) == pytest.approx(2.0, abs=1e-6)
    assert term(prior.flip(-1)) > 0.5  # x and y swapped


def test_correspondence_prior_is_refused_for_a_descriptor_model_without_landmark_guidance(descriptor_ckpt, tmp_path):
    from conftest import compose_train, tiny_overrides

    from motionlab.train import train

    cfg = compose_train(["experiment=adapter_paired_quick", "logger=none", "trainer.max_epochs=1", "loss.correspondence=1.0",
                         f"data.descriptor_ckpt={descriptor_ckpt}", *tiny_overrides(tmp_path, "adapter_paired_quick")], tmp_path / "run")
    with pytest.raises(Exception, match="not trained with loss.landmark_guidance > 0"):  # Hydra wraps the InputError
        train(cfg)


def test_similarity_to_recovers_a_head_motion_known_answer():
    from motionlab.geometry.landmarks import similarity_to

    rng = np.random.default_rng(0)
    reference = rng.uniform(10, 50, (10, 2))
    angle, scale, shift = 0.3, 1.2, np.array([3.0, -2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = reference @ rotation.T + shift
    matrix, offset = similarity_to(np.stack([reference, moved]), reference)
    assert np.allclose(matrix[0], np.eye(2)) and np.allclose(offset[0], 0.0, atol=1e-9)
    assert np.allclose(matrix[1], rotation) and np.allclose(offset[1], shift)
    mirrored = reference * np.array([-1.0, 1.0])  # a reflection is not a head motion: the best similarity is a poor fit
    matrix, offset = similarity_to(mirrored[None], reference)
    assert np.abs(reference @ matrix[0].T + offset[0] - mirrored).mean() > 5.0
    lip = moved.copy()
    lip[-1] += [0.0, 6.0]  # one point moves on its own: it pulls the equal-weight fit off the head's motion ...
    assert not np.allclose(similarity_to(lip[None], reference)[0][0], rotation, atol=1e-3)
    weights = np.ones(10)
    weights[-1] = 0.0  # ... but not one that gives it no weight
    matrix, offset = similarity_to(lip[None], reference, weights)
    assert np.allclose(matrix[0], rotation) and np.allclose(offset[0], shift)


def test_named_point_regression_measures_how_far_keypoints_leave_the_heads_true_motion():
    from motionlab.inference.cross_domain import RIGID_LANDMARKS, NamedPointRegression

    rng = np.random.default_rng(0)
    landmarks = np.repeat(rng.uniform(10, 50, (1, 68, 2)), 3, axis=0)
    angle = 0.2
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks[1] = landmarks[0] @ turn.T + [2.0, 1.0]  # frame 1: the head turned and moved; frame 2: as frame 0
    landmarks[2, 48:] += [0.0, 3.0]  # ... with the lips lower: not head motion
    keypoints = np.stack([landmarks[:, 36], landmarks[:, 57]], axis=1)  # an eye corner and a lip
    off_head = NamedPointRegression._off_head(keypoints, landmarks)
    assert np.allclose(off_head[:, 0], 0.0, atol=1e-9)  # the eye corner follows the head exactly
    assert np.allclose(off_head[:, 1], [0.0, 0.0, 9.0])  # the lip left it by 3 px in frame 2
    assert 36 in RIGID_LANDMARKS and 57 not in RIGID_LANDMARKS


def test_adapter_windows_are_centred_and_relative_to_the_first_frame():
    rng = np.random.default_rng(0)
    points = rng.uniform(50, 200, (6, P, 2)).astype(np.float32)
    windows, reference = landmark_windows(points, window=3)
    assert windows.shape == (6, 3, P, 2) and reference.shape == (6, P, 2)
    assert torch.all(windows[0, 1] == 0) and torch.equal(windows[0, 0], windows[0, 1])  # the first frame, edge repeated
    assert torch.equal(windows[3, 2], windows[4, 1])
    with pytest.raises(ValueError, match="odd"):
        create_model("landmark_adapter_temporal", window=4)


def test_rigid_roll_adapter_turns_the_keypoints_by_the_heads_roll_and_learns_only_the_rest():
    from motionlab.data.synthetic import neutral_motion
    from motionlab.data.toy_human import human_landmarks, human_style_for

    face = human_landmarks(human_style_for("id0"), neutral_motion())[:1]  # (1, 68, 2) pixels
    angle = 0.3
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    middle = face[0, 36:48].mean(0)  # the eye midpoint (both eyes have six points)
    rolled = (face - middle) @ turn.T + middle + np.array([4.0, -2.0])
    windows, reference = landmark_windows(np.concatenate([face, rolled]).astype(np.float32), window=3)
    adapter = create_model("landmark_adapter_temporal", window=3, num_kp=4, hidden=16, rigid_roll=True)
    upright, roll = adapter._unroll(windows, reference)
    assert roll[1, 1] == pytest.approx(angle, abs=1e-5) and roll[0, :2].abs().max() < 1e-6  # frame 0's window: 0, 0, 1
    # the learnt part sees the translation but no roll: an upright copy of the reference face, shifted
    spread = upright[1, 1] - upright[1, 1].mean(0)  # every point displaced alike
    assert float(spread.abs().max()) < 1e-4 and float(upright[1, 1].mean(0).norm()) > 0.05
    keypoints = torch.tensor([[-0.3, -0.2], [0.3, -0.2], [0.0, 0.1], [0.0, 0.3]]).expand(2, 4, 2)
    motion = adapter(windows, reference, keypoints)  # zero-initialised head: no learnt motion, only the roll
    centroid = keypoints[1].mean(0)
    expected = (keypoints[1] - centroid) @ torch.tensor(turn, dtype=torch.float32).T + centroid
    assert torch.allclose(keypoints[1] + motion["value"][1], expected, atol=1e-5)
    assert torch.equal(motion["jacobian"][1], torch.eye(2).expand(4, 2, 2))  # Jacobians are the learnt part's
    assert float(motion["value"][0].detach().abs().max()) < 1e-6  # the reference frame itself: no motion
    motion["value"].square().sum().backward()  # the learnt part trains through the turn
    assert all(p.grad is not None for p in adapter.mlp.parameters())


def test_adapter_refuses_a_descriptor_checkpoint_with_another_hash(adapter_checkpoint, descriptor_ckpt, tmp_path):
    predictor = load_adapter_predictor(descriptor_ckpt, adapter_checkpoint)
    assert predictor.adapter.model_info.name == "landmark_adapter_temporal"
    other = load_checkpoint(descriptor_ckpt)
    key = next(k for k in other["state_dict"] if k.endswith("kp.weight"))
    other["state_dict"][key] = other["state_dict"][key] + 0.01
    atomic_torch_save(other, tmp_path / "other_descriptor.ckpt")
    with pytest.raises(CheckpointFormatError, match="SHA-256"):
        load_adapter_predictor(tmp_path / "other_descriptor.ckpt", adapter_checkpoint)
    with pytest.raises(CheckpointFormatError, match="not an adapter checkpoint"):
        load_adapter_predictor(descriptor_ckpt, descriptor_ckpt)
    stored = load_checkpoint(adapter_checkpoint)["motionlab"]
    assert "descriptor_model" not in stored["models"] and len(stored["predictor"]["descriptor_sha256"]) == 64


@pytest.mark.skipif(not (SHARED / "data" / "real" / "drivers" / "human_d0.mp4").is_file(), reason="needs ../shared/data/real")
def test_a_real_human_clip_drives_a_cartoon_through_the_adapter(adapter_checkpoint, descriptor_ckpt, toy_world, tmp_path):
    driver = SHARED / "data" / "real" / "drivers" / "human_d0.mp4"
    out, side = tmp_path / "out.mp4", tmp_path / "side.mp4"
    result = run_cli("motionlab-animate", f"ckpt={descriptor_ckpt}", f"adapter_ckpt={adapter_checkpoint}", f"portrait={toy_world / 'id_0001.png'}",
                     f"driver={driver}", f"out={out}", f"side_by_side_out={side}", f"sequence_out={tmp_path / 'seq.npz'}",
                     "max_frames=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert count_video_frames(out) == 6 and count_video_frames(side) == 6
    from motionlab.data.video_io import open_clip
    from motionlab.inference.sequence import read_sequence

    triptych = open_clip(side).get([0])[0]
    assert triptych.shape[:2] == (256, 768)  # driver with landmarks | portrait | result with keypoints, 256 px panels
    sequence = read_sequence(tmp_path / "seq.npz")  # the viewer's file: dlib's 68 points on the driver, adapted keypoints
    assert len(sequence) == 6 and sequence.layers["driver_landmarks"][0] == "driver" and sequence.layers["driver_landmarks"][1].shape == (6, 68, 2)
    assert sequence.layers["adapted_keypoints"][0] == "generated" and "motion_agreement" not in sequence.traces
    # a non-square portrait keeps its size and aspect through the adapter path too
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.open(toy_world / "id_0001.png").convert("RGB").resize((96, 64)).save(wide)
    result = run_cli("motionlab-animate", f"ckpt={descriptor_ckpt}", f"adapter_ckpt={adapter_checkpoint}", f"portrait={wide}",
                     f"driver={driver}", f"out={tmp_path / 'wide.mp4'}", "max_frames=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert open_clip(tmp_path / "wide.mp4").get([0])[0].shape[:2] == (64, 96)


def test_cross_domain_evaluation_writes_motion_agreement(adapter_checkpoint, descriptor_ckpt, toy_world, tmp_path):
    drivers = [toy_world / "id_0002_video", toy_world / "id_0003_video"]  # toy human performances: no dlib, seconds
    result = run_cli("motionlab-eval", f"ckpt={descriptor_ckpt}", f"adapter_ckpt={adapter_checkpoint}",
                     f"drivers=[{','.join(map(str, drivers))}]", f"paths.root_dir={tmp_path}", "hydra.run.dir=eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    signals = ("mouth_opening", "eye_opening", "head_roll", "x", "y")
    expected = {f"agreement/{clip}/{s}" for clip in ("id_0002_video", "mean", "ceiling", "ceiling_generated") for s in signals}
    expected |= {f"agreement_adapted/{clip}/{s}" for clip in ("id_0002_video", "mean") for s in signals}
    assert expected <= set(metrics)
    assert all(-1.0 <= metrics[key] <= 1.0 for key in expected if np.isfinite(metrics[key]))
    assert {f"amplitude/{clip}/{s}" for clip in ("id_0002_video", "mean") for s in signals} <= set(metrics)
    assert {f"amplitude_adapted/id_0002_video/{s}" for s in signals} <= set(metrics)
    report = (tmp_path / "eval" / "eval.html").read_text()
    assert report.count("<svg") == 10 and "id_0003_video" in report
    clip = json.loads((tmp_path / "eval" / "eval.json").read_text())["clips"]["id_0002_video"]
    assert len(clip["driver"]["mouth_opening"]) == len(clip["generated"]["mouth_opening"]) == 8
    assert clip["reference_frame"] in range(8)  # the neutral frame by default, shown in the report
    assert f"| id_0002_video | 8 ({clip['reference_frame']}) |" in (tmp_path / "eval" / "eval.md").read_text()


def test_adapter_checkpoint_loads_without_its_training_folder(adapter_checkpoint, descriptor_ckpt, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    copy = shutil.copy(adapter_checkpoint, moved / "adapter.ckpt")
    predictor = load_adapter_predictor(descriptor_ckpt, copy)
    points = np.random.default_rng(0).uniform(40, 200, (5, P, 2)).astype(np.float32)
    portrait = torch.rand(1, 3, predictor.image_size, predictor.image_size)
    motion = predictor.motion(points, portrait)
    out = predictor(portrait, motion)
    assert out["generated"].shape == (5, 3, predictor.image_size, predictor.image_size)
    assert out["generated_keypoints"].value.shape == (5, 4, 2)
    with pytest.raises(ValueError, match="68-point"):
        predictor.motion(np.zeros((5, 110, 2), np.float32), portrait)
