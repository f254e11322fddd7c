"""The benchmarks' helpers for stand-in weights and the releases' input layout."""

import torch
from torch import nn

from benchmarks.common import release_gaussians, release_layout, with_data_statistics


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


def test_release_gaussians_keep_the_subnormal_tails_inside_only():
    from motionlab.geometry import keypoints_to_gaussian

    kp, tiny = torch.tensor([[[-0.9, -0.9]]]), torch.finfo(torch.float32).tiny
    with release_gaussians():
        release = keypoints_to_gaussian(kp, 64, 64, 0.01)
    ours = keypoints_to_gaussian(kp, 64, 64, 0.01)
    assert bool(((release > 0) & (release < tiny)).any()) and not bool(((ours > 0) & (ours < tiny)).any())
    torch.testing.assert_close(ours, release, rtol=0, atol=tiny)
