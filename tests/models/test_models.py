"""Geometry functions and the Animator network: known answers, shapes, clear errors."""

from __future__ import annotations

import pytest
import torch

from motionlab.geometry import identity_grid, keypoints_to_gaussian, total_variation, warp
from motionlab.losses.animator import AnimatorLoss
from motionlab.models import create_model, list_models
from motionlab.utils.checkpoint import WeightMismatchError, load_state_dict_strict


def test_identity_grid_hits_pixel_centres():
    grid = identity_grid(2, 4)
    assert grid.shape == (1, 2, 4, 2)
    assert torch.allclose(grid[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(grid[0, :, 0, 1], torch.tensor([-0.5, 0.5]))


def test_warp_zero_flow_is_identity_and_a_shift_moves_by_one_pixel():
    image = torch.rand(2, 3, 8, 8)
    assert torch.allclose(warp(image, torch.zeros(2, 8, 8, 2)), image, atol=1e-6)
    one_pixel = torch.zeros(2, 8, 8, 2)
    one_pixel[..., 0] = 2.0 / 8  # sample one pixel to the right
    shifted = warp(image, one_pixel)
    assert torch.allclose(shifted[..., :-1], image[..., 1:], atol=1e-6)
    with pytest.raises(ValueError, match=r"flow must have shape \(2, H, W, 2\), got \(2, 8, 8\)"):
        warp(image, torch.zeros(2, 8, 8))


def test_total_variation_known_values():
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 3, 4)
    assert total_variation(ramp).item() == pytest.approx(1.0)
    assert total_variation(torch.ones(1, 2, 5, 5)).item() == 0.0


def test_animator_shapes_and_strength():
    torch.manual_seed(0)
    net = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    with torch.no_grad():
        net.flow_head.bias.fill_(0.3)  # a non-zero motion to scale
    portrait, driver = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = net(portrait, driver)
    assert out["image"].shape == (2, 3, 32, 32) and out["flow"].shape == (2, 32, 32, 2)
    assert out["occlusion"].shape == out["blend"].shape == (2, 1, 32, 32)
    assert 0 <= out["image"].min() and out["image"].max() <= 1
    half = net(portrait, driver, strength=0.5)
    assert torch.allclose(half["flow"], out["flow"] * 0.5)
    assert net(portrait, driver, strength=0.0)["flow"].abs().max() == 0
    with pytest.raises(ValueError, match="portrait and driver"):
        net(portrait, driver[:, :, :16])
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 3, 30, 30), torch.rand(1, 3, 30, 30))


def test_animator_descriptor_maps_pair_or_difference():
    torch.manual_seed(0)
    small = dict(motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1, num_descriptors=3)
    pair, difference = create_model("animator_v1", **small), create_model("animator_v1", **small, descriptor_maps="difference")
    seen = {}
    for name, net in (("pair", pair), ("difference", difference)):
        net.predict_motion = lambda p, d, maps, name=name: (seen.__setitem__(name, maps), (torch.zeros(1, 32, 32, 2), torch.ones(1, 1, 32, 32)))[1]
    portrait_kp, driver_kp = torch.rand(1, 3, 2) - 0.5, torch.rand(1, 3, 2) - 0.5
    images = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    pair(*images, portrait_descriptors=portrait_kp, driver_descriptors=driver_kp)
    difference(*images, portrait_descriptors=portrait_kp, driver_descriptors=driver_kp)
    assert seen["pair"].shape == (1, 6, 32, 32) and seen["difference"].shape == (1, 3, 32, 32)
    assert torch.allclose(seen["difference"], seen["pair"][:, 3:] - seen["pair"][:, :3])  # the driver's minus the portrait's
    difference(*images, portrait_descriptors=portrait_kp, driver_descriptors=portrait_kp)
    assert seen["difference"].abs().max() == 0  # no motion, no maps
    with pytest.raises(ValueError, match="'pair' or 'difference'"):
        create_model("animator_v1", **small, descriptor_maps="both")


def test_animator_learns_a_translation():
    """A few optimiser steps on a shifted pair reduce the reconstruction error: gradients reach the flow."""
    torch.manual_seed(0)
    net = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    portrait = torch.zeros(4, 3, 32, 32)
    portrait[:, :, 10:20, 8:18] = 1.0
    driver = portrait.roll(3, dims=-1)
    loss = AnimatorLoss(identity=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    errors = []
    for _ in range(30):
        terms = loss(net(portrait, driver), {"portrait": portrait, "driver": driver})
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        errors.append(terms["reconstruction"].item())
    assert errors[-1] < 0.5 * errors[0]


def test_flow_keypoint_alignment_is_zero_for_the_flow_that_carries_driver_keypoints_to_the_portrait():
    portrait_kp = torch.tensor([[[-0.5, 0.2], [0.3, -0.4]]])
    driver_kp = portrait_kp + torch.tensor([0.2, -0.1])  # the driver shows the face moved right and up
    images = {"portrait": torch.rand(1, 3, 16, 16), "driver": torch.rand(1, 3, 16, 16)}
    loss = AnimatorLoss(identity=0.0, alignment_mode="flow_keypoints")
    # backward flow: the driver's keypoint reads the portrait where the same keypoint sits (-0.2, +0.1 corner units)
    exact = torch.zeros(1, 16, 16, 2) + torch.tensor([-0.2, 0.1]) * 15 / 16
    outputs = {"image": images["driver"], "flow": exact, "portrait_descriptors": portrait_kp, "driver_descriptors": driver_kp}
    assert loss(outputs, images)["alignment"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss({**outputs, "flow": torch.zeros(1, 16, 16, 2)}, images)["alignment"].item() == pytest.approx(0.15 * 15 / 16, rel=1e-5)
    with pytest.raises(ValueError, match="needs descriptors"):
        loss({"image": images["driver"], "flow": exact}, images)


def test_geometry_gradients_match_finite_differences():
    torch.manual_seed(0)
    image = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    flow = (0.2 * torch.rand(1, 6, 6, 2, dtype=torch.float64) - 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, f: warp(i, f), (image, flow))
    points = (torch.rand(1, 3, 2, dtype=torch.float64) - 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: keypoints_to_gaussian(p, 5, 7, 0.05), (points,))


def test_keypoint_gaussians_have_no_subnormal_tails():
    """Far from a keypoint the Gaussian is 0, not a subnormal number (which CPUs compute on tens of times slower);
    everywhere else it is the release's exp, to the bit, in 2-D and 3-D."""
    from motionlab.geometry.head_pose import keypoints_to_gaussian_3d

    kp = torch.tensor([[[-0.9, -0.9]]])
    maps = keypoints_to_gaussian(kp, 64, 64, 0.01)
    exponent = -0.5 * (torch.stack(torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="xy"), -1) - kp[0, 0]).square().sum(-1) / 0.01
    release = torch.exp(exponent)
    tiny = torch.finfo(torch.float32).tiny
    assert bool(((release > 0) & (release < tiny)).any()), "the release's map has subnormals here"
    assert not bool(((maps > 0) & (maps < tiny)).any()) and torch.equal(maps[0, 0][release >= tiny], release[release >= tiny])
    volume = keypoints_to_gaussian_3d(torch.tensor([[[0.9, 0.9, 0.9]]]), 8, 32, 32, 0.01)
    assert not bool(((volume > 0) & (volume < tiny)).any()) and volume.max() > 0.5


VARIANTS = list_models()


@pytest.mark.parametrize("name", VARIANTS)
def test_every_registered_variant_builds_and_carries_its_metadata(name):
    net = create_model(name)
    info = net.model_info
    assert info.name == name and info.spec() == {"name": name, "args": {}, "component": None}
    assert sum(p.numel() for p in net.parameters()) > 0
    if info.example_inputs is not None:  # exportable: its example inputs run through it
        inputs = info.example_inputs(1, torch.Generator().manual_seed(0))
        with torch.no_grad():
            net.eval()(*inputs.values())


def test_registry_unknown_name_lists_known():
    assert {"animator_v1", "fomm_vox256", "lipsync_unet328_wenet", "syncnet328_hubert"} <= set(VARIANTS)
    with pytest.raises(KeyError, match="unknown model 'animator_v9'; registered models: animator_v1, .*fomm_mgif256"):
        create_model("animator_v9")


def test_a_model_config_naming_an_unknown_variant_lists_the_known_ones(tmp_path):
    from conftest import compose_train

    from motionlab.utils.config import ConfigError, validate_config

    cfg = compose_train(["experiment=quickstart", "model.net.name=animator_v9", f"paths.root_dir={tmp_path}"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"config key 'model.net.name': unknown model 'animator_v9'; registered models: animator_v1, "):
        validate_config(cfg)
    cfg = compose_train(["experiment=quickstart", "+model.net.depth=3", f"paths.root_dir={tmp_path}"], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"'model.net.depth' is not a parameter of animator_v1 \(it accepts: input_size, image_channels"):
        validate_config(cfg)


def test_strict_loading_names_missing_and_unexpected_keys():
    net = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    state = net.state_dict()
    state.pop("flow_head.bias")
    state["extra.weight"] = torch.zeros(1)
    state["to_output.bias"] = torch.zeros(7)
    with pytest.raises(WeightMismatchError) as error:
        load_state_dict_strict(net, state, "bad.ckpt")
    message = str(error.value)
    assert "missing keys (1): flow_head.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "to_output.bias: checkpoint (7,) vs model (4,)" in message


def test_a_network_loaded_from_a_file_skips_only_its_random_initialisation(tmp_path):
    """create_model(ckpt=...) builds without drawing random weights (the strict load overwrites every one) and gives the
    network a plain build + load gives; torch.nn.init is itself again afterwards, also when the builder fails."""
    from motionlab.models.fomm import save_fomm_checkpoint
    from motionlab.models.registry import build

    torch.manual_seed(0)
    small = dict(input_size=64, num_kp=4, kp_detector={"block_expansion": 8, "max_features": 32, "num_blocks": 3},
                 generator={"block_expansion": 8, "max_features": 32, "num_bottleneck_blocks": 1,
                            "dense_motion_params": {"block_expansion": 8, "max_features": 32, "num_blocks": 3}})
    path = save_fomm_checkpoint(create_model("fomm_vox256", **small), tmp_path / "small.pth.tar")
    loaded = create_model("fomm_vox256", ckpt=path, **small).eval()
    initialised = create_model("fomm_vox256", **small)
    release = torch.load(path, weights_only=True)
    initialised.generator.load_state_dict(release["generator"])
    initialised.kp_detector.load_state_dict(release["kp_detector"])
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image, image)["prediction"], initialised.eval()(image, image)["prediction"])
    kaiming = torch.nn.init.kaiming_uniform_
    with pytest.raises(TypeError):
        build("fomm_vox256", {"no_such_argument": 1}, initialize=False)
    assert torch.nn.init.kaiming_uniform_ is kaiming
    weight = torch.zeros(4, 4)
    torch.nn.init.uniform_(weight)
    assert weight.abs().sum() > 0  # random fills work again
