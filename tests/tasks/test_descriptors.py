"""Equivariance losses on constructed detectors; relative motion and the keypoint container on known keypoints."""

from __future__ import annotations

import pytest
import torch

from motionlab.geometry import (
    Keypoints,
    RandomAffineTPS,
    coordinate_grid,
    heatmap_to_keypoints,
    movement_scale,
    relative_motion,
)
from motionlab.losses.equivariance import equivariance_losses


def _blob_image(centres: torch.Tensor, size: int = 64, sigma: float = 0.05) -> torch.Tensor:
    """(B, K, H, W) images, channel k a sharp Gaussian at centres[:, k] (normalised coordinates)."""
    grid = coordinate_grid(size, size)
    offsets = grid.view(1, 1, size, size, 2) - centres.view(*centres.shape[:2], 1, 1, 2)
    return torch.exp(-offsets.square().sum(-1) / (2 * sigma**2))


def exact_detector(image: torch.Tensor) -> Keypoints:
    """Finds each channel's blob by soft-argmax of the normalised image: equivariant by construction."""
    heat = image / image.sum(dim=(-2, -1), keepdim=True)
    return Keypoints(heatmap_to_keypoints(heat), size=tuple(image.shape[-2:]))


def test_equivariance_is_zero_for_an_exactly_equivariant_detector():
    torch.manual_seed(0)
    centres = torch.rand(3, 4, 2) * 1.0 - 0.5
    images = _blob_image(centres)
    transform = RandomAffineTPS(3, sigma_affine=0.05, sigma_tps=0.005)
    value, jacobian = equivariance_losses(exact_detector, images, exact_detector(images), transform)
    assert jacobian is None
    assert value.item() < 2e-3  # bilinear resampling of a sampled blob, nothing more

    constant = lambda image: Keypoints(torch.zeros(image.shape[0], 4, 2), size=(64, 64))  # noqa: E731  ignores the image
    value_bad, _ = equivariance_losses(constant, images, constant(images), transform)
    assert value_bad.item() > 10 * value.item()


def test_jacobian_equivariance_of_the_exact_detector_with_identity_jacobians():
    torch.manual_seed(1)
    images = _blob_image(torch.rand(2, 3, 2) - 0.5)

    def with_jacobian(image):
        out = exact_detector(image)
        return Keypoints(out.value, size=out.size, jacobian=torch.eye(2).expand(*out.value.shape[:2], 2, 2))

    identity = RandomAffineTPS(2, sigma_affine=0.0, sigma_tps=0.0)
    value, jacobian = equivariance_losses(with_jacobian, images, with_jacobian(images), identity)
    assert value.item() < 1e-4 and jacobian.item() < 1e-6
    stretched = RandomAffineTPS(2, sigma_affine=0.0, sigma_tps=0.0)
    stretched.theta = torch.tensor([[[1.3, 0.0, 0.0], [0.0, 1.0, 0.0]]]).expand(2, 2, 3)
    _, jacobian = equivariance_losses(with_jacobian, images, with_jacobian(images), stretched)
    assert jacobian.item() == pytest.approx(0.3 / 4, rel=1e-4)  # |I - diag(1.3, 1)| averaged over 4 entries


def _kp(value, jacobian=None) -> Keypoints:
    return Keypoints(value, size=(65, 33), jacobian=jacobian)


def test_relative_motion_transfer_known_answer():
    source = _kp(torch.tensor([[[0.1, 0.2], [0.3, -0.4], [-0.5, 0.0]]]), torch.eye(2).expand(1, 3, 2, 2) * 2)
    initial = _kp(torch.tensor([[[0.0, 0.0], [0.2, 0.2], [-0.2, 0.1]]]), torch.eye(2).expand(1, 3, 2, 2))
    driving = _kp(initial.value + torch.tensor([0.05, -0.1]), torch.eye(2).expand(1, 3, 2, 2) * 1.5)
    out = relative_motion(source, driving, initial)
    assert torch.allclose(out.value, source.value + torch.tensor([0.05, -0.1]))
    assert torch.allclose(out.jacobian, torch.eye(2).expand(1, 3, 2, 2) * 3.0)
    absolute = relative_motion(source, driving, initial, relative_movement=False)
    assert torch.equal(absolute.value, driving.value)
    # a source twice the size of the driver: movements are doubled
    big = _kp(initial.value * 2)
    assert movement_scale(big, initial).item() == pytest.approx(2.0)
    scaled = relative_motion(big, driving, initial, relative_jacobian=False, adapt_movement_scale=True)
    assert torch.allclose(scaled.value, big.value + 2 * torch.tensor([0.05, -0.1]))


def test_keypoint_conventions_round_trip_and_shapes_are_checked():
    kp = _kp(torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]]), torch.eye(2).expand(1, 3, 2, 2))
    pixels = kp.to_pixels()  # corner-aligned: -1 and 1 are the centres of the first and last pixels
    assert pixels.convention == "pixels" and pixels.value.tolist() == [[[0.0, 0.0], [32.0, 64.0], [16.0, 32.0]]]
    assert torch.allclose(pixels.to_normalized().value, kp.value) and pixels.jacobian is kp.jacobian
    assert kp.expand(4).value.shape == (4, 3, 2) and kp.expand(4).jacobian.shape == (4, 3, 2, 2)
    assert set(kp.as_arrays()) == {"value", "jacobian"} and (kp.as_arrays()["value"] == kp.value.numpy()).all()
    with pytest.raises(ValueError, match=r"keypoints.value must have shape \(B, K, 2\), got \(3, 2\)"):
        Keypoints(torch.zeros(3, 2), size=(8, 8))
    with pytest.raises(ValueError, match=r"keypoints.jacobian must have shape \(1, 3, 2, 2\)"):
        _kp(kp.value, torch.zeros(1, 3, 2))


def test_perceptual_pyramid_offline_and_vgg19_from_a_weights_file(tmp_path):
    import torchvision

    from motionlab.losses.perceptual import FeaturePyramid, PerceptualPyramidLoss

    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    effnet = PerceptualPyramidLoss(FeaturePyramid(), scales=(1.0, 0.5))
    assert effnet(images, images).item() == 0.0
    assert effnet(images, images.flip(-1)).item() > 0.1
    weights = tmp_path / "vgg19.pth"
    torch.save(torchvision.models.vgg19().state_dict(), weights)  # a real-architecture file, random weights
    vgg = FeaturePyramid("vgg19", weights_path=str(weights))
    assert [f.shape[1] for f in vgg(images)] == [64, 128, 256, 512, 512]
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        FeaturePyramid("vgg19")


def test_flow_at_keypoints_known_answers_and_gradients():
    from motionlab.geometry import flow_at, keypoints_to_flow_coordinates, warp

    # corner-aligned +-1 sits on the outer pixel centres, which edge-aligned coordinates put at +-(n - 1) / n
    points = torch.tensor([[[-1.0, 1.0], [0.0, 0.5]]])
    assert torch.allclose(keypoints_to_flow_coordinates(points, 8, 4), torch.tensor([[[-0.75, 0.875], [0.0, 0.4375]]]))
    # a constant flow is read back anywhere; a flow sending pixel p to the keypoint moves an image's dot onto it
    flow = torch.zeros(1, 16, 16, 2)
    flow[..., 0] = 0.25
    assert torch.allclose(flow_at(flow, torch.tensor([[[0.1, -0.3], [0.9, 0.9]]])), torch.tensor([[[0.25, 0.0], [0.25, 0.0]]]))
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 8, 10] = 1.0  # pixel x = 10 -> edge-aligned (2 * 10 + 1) / 16 - 1 = 0.3125
    moved = warp(image, flow)  # output p reads input p + 0.25 (two pixels to the right)
    assert moved[0, 0, 8, 8] == pytest.approx(1.0)
    flow = torch.randn(2, 8, 8, 2, requires_grad=True)
    flow_at(flow, torch.rand(2, 3, 2) * 2 - 1).sum().backward()
    assert flow.grad is not None and flow.grad.abs().sum() > 0 and torch.isclose(flow.grad.sum(), torch.tensor(2 * 3 * 2.0))


def test_descriptor_loss_guides_keypoints_to_landmarks_known_answer():
    from motionlab.losses.descriptor import DescriptorLoss
    from motionlab.losses.landmarks import normalized_landmarks
    from motionlab.losses.perceptual import FeaturePyramid, PerceptualPyramidLoss

    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    landmarks = torch.rand(2, 68, 2) * 63.0
    loss = DescriptorLoss(PerceptualPyramidLoss(FeaturePyramid(), scales=(1.0,)), equivariance_value=0.0, equivariance_jacobian=0.0,
                          landmark_guidance=2.0)
    on_landmarks = Keypoints(normalized_landmarks(landmarks, 64), size=(64, 64))
    terms = loss({"image": images, "kp_driving": on_landmarks}, {"driver": images, "driver_landmarks": landmarks})
    assert terms["landmark_guidance"].item() == pytest.approx(0.0, abs=1e-6) and terms["total"].item() == pytest.approx(0.0, abs=1e-6)
    shifted = Keypoints(on_landmarks.value + torch.tensor([3.0 * 2 / 63, 0.0]), size=(64, 64))  # 3 px to the right
    terms = loss({"image": images, "kp_driving": shifted}, {"driver": images, "driver_landmarks": landmarks})
    assert terms["landmark_guidance"].item() == pytest.approx(3.0 / 63, rel=1e-4)  # x off by 6/63, y exact: mean 3/63
    assert terms["total"].item() == pytest.approx(2.0 * 3.0 / 63, rel=1e-4)
    # batches without face labels (data.face_labels=false) train the keypoints unsupervised, as FOMM does
    assert "landmark_guidance" not in loss({"image": images, "kp_driving": shifted}, {"driver": images})


def test_descriptor_loss_part_perceptual_sees_the_mouth_and_needs_face_labels():
    """The part term is 0 for a perfect result, grows when only the mouth region differs (where the whole-image pyramid
    moves far less, relative to its size), and is left out of batches without face labels."""
    from motionlab.losses.descriptor import DescriptorLoss
    from motionlab.losses.perceptual import FeaturePyramid, PerceptualPyramidLoss

    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64) * 0.2 + 0.4
    landmarks = torch.rand(2, 68, 2) * 10 + 20
    landmarks[:, 48:68] = torch.rand(2, 20, 2) * 8 + torch.tensor([28.0, 44.0])  # the mouth: x 28-36, y 44-52
    loss = DescriptorLoss(PerceptualPyramidLoss(FeaturePyramid(), scales=(1.0,)), equivariance_value=0.0, equivariance_jacobian=0.0,
                          part_perceptual=1.0)
    keypoints = Keypoints(torch.zeros(2, 10, 2), size=(64, 64))
    same = loss({"image": images, "kp_driving": keypoints}, {"driver": images, "driver_landmarks": landmarks})
    assert same["part_perceptual"].item() == pytest.approx(0.0, abs=1e-6)
    opened = images.clone()
    opened[:, :, 46:51, 29:36] = 0.05  # a dark open mouth
    terms = loss({"image": opened, "kp_driving": keypoints}, {"driver": images, "driver_landmarks": landmarks})
    assert terms["part_perceptual"].item() > 1.5 * terms["perceptual"].item() > 0
    assert "part_perceptual" not in loss({"image": opened, "kp_driving": keypoints}, {"driver": images})
