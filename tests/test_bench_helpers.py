"""The benchmarks' helpers for stand-in weights and the releases' input layout."""

import torch
from torch import nn

from benchmarks.common import release_computation, release_layout, with_data_statistics


def test_data_statistics_are_the_frames_and_the_logits_get_unit_spread():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))
    frames = torch.rand(4, 3, 16, 16)
    with_data_statistics(net, lambda: net(frames), logits=net[3])
    assert not net.training and net[1].momentum == 0.1
    with torch.no_grad():
        features = net[0](frames)
        torch.testing.assert_close(net[1].running_mean, features.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(net[1].running_var, features.var(dim=(0, 2, 3)), rtol=1e-4, atol=1e-6)
        assert abs(float(net(frames).std()) - 1.0) < 1e-4


def test_release_layout_keeps_the_values_in_channels_last_strides():
    images = torch.rand(2, 3, 8, 8)
    held = release_layout(images)
    assert torch.equal(held, images) and held.is_contiguous(memory_format=torch.channels_last) and not held.is_contiguous()


def test_release_computation_is_the_releases_inside_only():
    """Inside, the Gaussians keep their subnormal tails and the anti-alias blur runs at every pixel; the numbers agree
    with motionlab's (to the subnormals, to the bit); outside, motionlab's ways are back."""
    from motionlab.geometry import keypoints_to_gaussian
    from motionlab.models.fomm import AntiAliasInterpolation2d

    kp, tiny = torch.tensor([[[-0.9, -0.9]]]), torch.finfo(torch.float32).tiny
    down, image = AntiAliasInterpolation2d(3, 0.25), torch.rand(1, 3, 64, 64)
    forward = AntiAliasInterpolation2d.forward
    with release_computation():
        release, release_down = keypoints_to_gaussian(kp, 64, 64, 0.01), down(image)
        assert AntiAliasInterpolation2d.forward is not forward
    ours = keypoints_to_gaussian(kp, 64, 64, 0.01)
    assert bool(((release > 0) & (release < tiny)).any()) and not bool(((ours > 0) & (ours < tiny)).any())
    torch.testing.assert_close(ours, release, rtol=0, atol=tiny)
    assert AntiAliasInterpolation2d.forward is forward and torch.equal(down(image), release_down)
