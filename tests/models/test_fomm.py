"""FOMM compatibility: key/shape parity with the published checkpoints, round trip, geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SHARED

from motionlab.geometry import Keypoints, RandomAffineTPS, coordinate_grid, heatmap_to_keypoints, sparse_motions
from motionlab.models import create_model, load_pretrained
from motionlab.models.fomm import save_fomm_checkpoint
from motionlab.utils.checkpoint import WeightMismatchError

MANIFEST = SHARED / "reference" / "weights" / "fomm.json"


@pytest.mark.skipif(not MANIFEST.is_file(), reason="../shared/reference/weights/fomm.json is not present")
@pytest.mark.parametrize("variant", ["fomm_vox256", "fomm_taichi256", "fomm_mgif256"])
def test_state_dicts_match_the_published_checkpoints(variant, tmp_path):
    """Key/shape parity with the shared manifest, and a release-layout file of those shapes loads through create_model."""
    setting = {"fomm_vox256": "vox-256", "fomm_taichi256": "taichi-256", "fomm_mgif256": "mgif-256"}[variant]
    reference = json.loads(MANIFEST.read_text())[setting]
    model = create_model(variant)
    for part, expected_count in (("kp_detector", 75), ("generator", 196)):
        ours = {k: list(v.shape) for k, v in getattr(model, part).state_dict().items()}
        assert len(ours) == len(reference[part]) == expected_count
        assert ours == reference[part], f"{setting} {part}: {set(ours) ^ set(reference[part])}"
    release = {part: {key: torch.full(shape, 0.5) for key, shape in reference[part].items()} for part in ("kp_detector", "generator")}
    torch.save({**release, "discriminator": {}, "optimizer_generator": {}, "epoch": 99}, tmp_path / "release.pth.tar")
    loaded = create_model(variant, ckpt=tmp_path / "release.pth.tar")
    assert all(bool((value == 0.5).all()) for value in loaded.state_dict().values() if value.is_floating_point())
    assert model.model_info.input_size == (256, 256) and model.model_info.family == "keypoint_animator"


def _small_fomm():
    """The FOMM architecture at a size that runs in milliseconds (same code, fewer channels)."""
    return create_model(
        "fomm_vox256", input_size=64,
        num_kp=4,
        kp_detector={"block_expansion": 8, "max_features": 32, "num_blocks": 3},
        generator={"block_expansion": 8, "max_features": 32, "num_bottleneck_blocks": 1,
                   "dense_motion_params": {"block_expansion": 8, "max_features": 32, "num_blocks": 3}},
    ).eval()


@pytest.fixture(scope="module")
def small_fomm():
    torch.manual_seed(0)
    return _small_fomm()


def test_forward_shapes(small_fomm):
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = small_fomm(source, driving)
    assert out["image"].shape == (2, 3, 64, 64)
    assert out["kp_source"].value.shape == (2, 4, 2) and out["kp_source"].jacobian.shape == (2, 4, 2, 2)
    assert out["kp_source"].value.abs().max() <= 1 and out["kp_source"].size == (64, 64)
    assert out["mask"].shape == (2, 5, 16, 16) and out["occlusion_map"].shape == (2, 1, 16, 16)


def test_skip_connections_add_no_weights_reach_the_fine_features_and_cache_them(tmp_path):
    """``skip_connections`` adds the warped, occlusion-masked encoder features of each finer resolution to the
    decoder (no new weights: a FOMM release file still fits), the result depends on the full-resolution features,
    the per-portrait feature cache of inference gives the frames of a full forward, and the release format, whose code
    has no skips, is refused."""
    torch.manual_seed(0)
    plain = _small_fomm()
    torch.manual_seed(0)
    skipped = create_model("fomm_vox256", input_size=64, num_kp=4, kp_detector={"block_expansion": 8, "max_features": 32, "num_blocks": 3},
                           generator={"block_expansion": 8, "max_features": 32, "num_bottleneck_blocks": 1, "skip_connections": True,
                                      "dense_motion_params": {"block_expansion": 8, "max_features": 32, "num_blocks": 3}}).eval()
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in skipped.state_dict().items()}
    skipped.load_state_dict(plain.state_dict())
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        kp_source, kp_driving = skipped.kp_detector(source), skipped.kp_detector(driving)
        assert (skipped.generator(source, kp_driving, kp_source)["prediction"] - plain.generator(source, kp_driving, kp_source)["prediction"]).abs().max() > 1e-3
        features = skipped.generator.encode_source(source[:1])
        assert [f.shape[-1] for f in features] == [64, 32, 16]
        cached = skipped.generator(source[:1].expand(2, -1, -1, -1), kp_driving, skipped.kp_detector(source[:1]).expand(2),
                                   source_features=features)["prediction"]
        full = skipped.generator(source[:1].expand(2, -1, -1, -1), kp_driving, skipped.kp_detector(source[:1]).expand(2))["prediction"]
    assert (cached - full).abs().max() < 1e-6
    with pytest.raises(WeightMismatchError, match="skip_connections"):
        save_fomm_checkpoint(skipped, tmp_path / "release.pth.tar")
    assert not (tmp_path / "release.pth.tar").exists()
    for model, reaches_finest in ((skipped, True), (plain, False)):
        finest = model.generator.encode_source(source)[0].detach().requires_grad_()
        rest = [f.detach() for f in model.generator.encode_source(source)[1:]]
        model.generator(source, kp_driving, kp_source, source_features=[finest, *rest])["prediction"].mean().backward()
        assert (finest.grad is not None and finest.grad.abs().sum() > 0) == reaches_finest


def test_fomm_checkpoint_round_trip(small_fomm, tmp_path):
    path = save_fomm_checkpoint(small_fomm, tmp_path / "model.pth.tar", epoch=7)
    assert torch.load(path, weights_only=True)["epoch"] == 7
    clone = _small_fomm()
    load_pretrained(clone, path)
    clone.eval()
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(small_fomm(source, driving)["image"], clone(source, driving)["image"])


def test_foreign_checkpoints_are_refused_with_keys(small_fomm, tmp_path):
    no_parts = tmp_path / "other.pth.tar"
    torch.save({"generator_full": {}}, no_parts)
    with pytest.raises(WeightMismatchError, match=r"not a FOMM checkpoint: entries \['kp_detector', 'generator'\] are missing"):
        load_pretrained(_small_fomm(), no_parts)
    wrong = tmp_path / "wrong.pth.tar"
    state = {"kp_detector": small_fomm.kp_detector.state_dict(), "generator": dict(small_fomm.generator.state_dict())}
    state["generator"].pop("final.bias")
    state["generator"]["extra.weight"] = torch.zeros(1)
    torch.save(state, wrong)
    with pytest.raises(WeightMismatchError, match=r"(?s)missing keys \(1\): generator\.final\.bias.*unexpected keys \(1\): generator\.extra\.weight"):
        load_pretrained(_small_fomm(), wrong)


def test_soft_argmax_of_a_one_hot_heatmap():
    heatmap = torch.zeros(1, 2, 5, 9)
    heatmap[0, 0, 0, 0] = 1.0  # top-left corner
    heatmap[0, 1, 2, 6] = 1.0
    points = heatmap_to_keypoints(heatmap)
    assert torch.allclose(points[0, 0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(points[0, 1], torch.tensor([2 * 6 / 8 - 1, 0.0]))


def test_sparse_motion_is_a_translation_without_jacobians():
    kp_driving = Keypoints(torch.tensor([[[0.2, -0.1]]]), size=(4, 4))
    kp_source = Keypoints(torch.tensor([[[0.5, 0.3]]]), size=(4, 4))
    motions = sparse_motions(4, 4, kp_driving, kp_source)
    grid = coordinate_grid(4, 4)
    assert torch.allclose(motions[0, 0], grid)
    assert torch.allclose(motions[0, 1], grid + torch.tensor([0.3, 0.4]))


def test_random_warp_points_and_images_agree():
    torch.manual_seed(0)
    warp = RandomAffineTPS(2, sigma_affine=0.1, sigma_tps=0.01)
    identity = RandomAffineTPS(2, sigma_affine=0.0, sigma_tps=0.0)
    points = torch.rand(2, 6, 2) * 1.6 - 0.8
    assert torch.allclose(identity.warp_points(points), points)
    assert torch.allclose(identity.jacobian(points), torch.eye(2).expand(2, 6, 2, 2))
    # an image that is a smooth function of position, warped, equals that function at the warped positions
    grid = coordinate_grid(32, 32).permute(2, 0, 1).unsqueeze(0).expand(2, -1, -1, -1)
    warped = warp.warp_images(grid)
    expected = warp.warp_points(coordinate_grid(32, 32).view(1, -1, 2).expand(2, -1, -1)).view(2, 32, 32, 2).permute(0, 3, 1, 2)
    inside = expected.abs().amax(1) < 0.95
    assert torch.allclose(warped.permute(0, 2, 3, 1)[inside], expected.permute(0, 2, 3, 1)[inside], atol=1e-4)


def test_export_cli_writes_the_release_format(descriptor_ckpt, tmp_path):
    import subprocess

    from conftest import motionlab_bin, subprocess_env

    out = tmp_path / "exported.pth.tar"
    result = subprocess.run([motionlab_bin("motionlab-export"), "fomm", f"ckpt={descriptor_ckpt}", f"out={out}"],
                            capture_output=True, text=True, env=subprocess_env(tmp_path), timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    exported = torch.load(out, weights_only=True)
    trained = torch.load(descriptor_ckpt, weights_only=True)["state_dict"]
    assert set(exported) == {"kp_detector", "generator", "epoch"}
    for key, value in exported["kp_detector"].items():
        assert torch.equal(value, trained[f"net.kp_detector.{key}"])


@pytest.mark.parametrize("adapt_movement_scale", [False, True])
def test_keypoint_animate_path_matches_fomms_own_loop(small_fomm, adapt_movement_scale):
    """motionlab's keypoint animate path (portrait keypoints and features computed once, batches of 3, every eligible
    convolution forced to NNPACK's Winograd / FFT) gives the frames of FOMM's demo loop (benchmarks/fomm_reference.py:
    batch 1, direct convolutions, the source re-encoded every frame) within 1e-4."""
    import copy

    from benchmarks.fomm_reference import fomm_make_animation
    from motionlab.inference.animate import animate_frames
    from motionlab.models.fast_conv import FastConv2d, use_fast_convolutions
    from motionlab.tasks.descriptor_predictor import DescriptorPredictor

    generator = torch.Generator().manual_seed(1)
    portrait = (torch.rand(64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
    frames = (torch.rand(7, 64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
    fast = copy.deepcopy(small_fomm)
    assert use_fast_convolutions(fast, algorithm="nnpack") > 10
    assert set(fast.state_dict()) == set(small_fomm.state_dict())  # same parameters, same keys
    predictor = DescriptorPredictor(fast, adapt_movement_scale=adapt_movement_scale, detect_generated=False)
    (source, _), (driving, _) = predictor.prepare_portrait(portrait), predictor.prepare_driver(frames)
    reference = torch.from_numpy(np.stack(fomm_make_animation(small_fomm.kp_detector, small_fomm.generator, source, driving,
                                                              adapt_movement_scale))).permute(0, 3, 1, 2)
    with torch.inference_mode():
        ours = torch.cat([batch["generated"] for batch in animate_frames(predictor, portrait, frames, batch_size=3)])
        conv = fast.generator.bottleneck.r0.conv1
        features = torch.rand(1, conv.in_channels, 16, 16, generator=generator)
        direct = torch.nn.functional.conv2d(features, conv.weight, conv.bias, padding=1)
        assert isinstance(conv, FastConv2d) and 0 < (conv(features) - direct).abs().max() < 1e-5  # NNPACK ran: close, not equal
    assert ours.shape == reference.shape == (7, 3, 64, 64)
    assert (ours - reference).abs().max() < 1e-4


def test_fast_convolution_choices_persist_per_machine(tmp_path, monkeypatch):
    """A timed choice is stored under this machine and the layer's geometry and input shape (FFTW-style wisdom): a
    later process (here: the in-memory copy dropped) takes it from the file without timing again."""
    import json

    from motionlab.models import fast_conv

    if not fast_conv.nnpack_available():
        pytest.skip("this PyTorch build has no NNPACK for this CPU")
    monkeypatch.setenv("MOTIONLAB_CACHE_DIR", str(tmp_path))
    fast_conv.forget_wisdom()
    try:
        x = torch.rand(1, 8, 16, 16)
        with torch.no_grad():
            first = fast_conv.FastConv2d.from_conv(torch.nn.Conv2d(8, 8, 3, padding=1))
            first(x)
            stored = json.loads((tmp_path / fast_conv.WISDOM_FILE).read_text())
            (choices,) = stored.values()
            assert choices == {first.wisdom_key(tuple(x.shape)): first.choices[tuple(x.shape)]}
            fast_conv.forget_wisdom()
            monkeypatch.setattr(fast_conv.FastConv2d, "_choose", lambda self, x: pytest.fail("timed again despite the stored choice"))
            later = fast_conv.FastConv2d.from_conv(torch.nn.Conv2d(8, 8, 3, padding=1))
            later(x)
            assert later.choices == first.choices
    finally:
        fast_conv.forget_wisdom()


def test_fast_convolutions_train_through_the_direct_convolution(small_fomm):
    """With autograd on, a FastConv2d is exactly its nn.Conv2d (same values and gradients): only inference changes."""
    import copy

    from motionlab.models.fast_conv import use_fast_convolutions

    fast = copy.deepcopy(small_fomm).train()
    use_fast_convolutions(fast, algorithm="nnpack")
    slow = copy.deepcopy(small_fomm).train()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    fast(source, driving)["image"].mean().backward()
    slow(source, driving)["image"].mean().backward()
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters()):
        assert torch.equal(a.grad, b.grad), name


def test_reduced_precision_animate_stays_close_to_fp32(small_fomm):
    """precision="bf16" really runs in bfloat16 (the frames differ from fp32's) and its PSNR against the fp32 frames is
    above the documented floor of 35 dB."""
    from motionlab.inference.animate import animate_frames
    from motionlab.tasks.descriptor_predictor import DescriptorPredictor

    generator = torch.Generator().manual_seed(2)
    portrait = (torch.rand(64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
    frames = (torch.rand(5, 64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
    outputs = {}
    with torch.inference_mode():
        for precision in ("fp32", "bf16"):
            predictor = DescriptorPredictor(small_fomm, detect_generated=False)
            outputs[precision] = torch.cat([batch["generated"] for batch in animate_frames(predictor, portrait, frames, 5, precision)])
    assert outputs["bf16"].dtype == torch.float32
    mse = float(((outputs["bf16"] - outputs["fp32"]) ** 2).mean())
    assert 0 < mse and 10 * np.log10(1 / mse) > 35


@pytest.mark.parametrize(("scale", "side"), [(0.25, 256), (0.25, 65), (0.5, 33), (0.125, 64)])
def test_anti_alias_down_is_the_release_blur_then_every_step_th_pixel(scale, side):
    """The strided convolution equals FOMM's definition (blur every pixel, keep every step-th) to the bit, for sides
    the step does not divide too, and carries gradients."""
    import torch.nn.functional as F

    from motionlab.models.fomm import AntiAliasInterpolation2d

    down = AntiAliasInterpolation2d(3, scale)
    x = torch.rand(2, 3, side, side, requires_grad=True)
    blurred = F.conv2d(F.pad(x, (down.ka, down.kb, down.ka, down.kb)), down.weight, groups=3)
    expected = blurred[:, :, :: down.step, :: down.step]
    out = down(x)
    assert out.shape == expected.shape and torch.equal(out, expected)
    (gradient,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(gradient, torch.autograd.grad(expected.sum(), x)[0])
