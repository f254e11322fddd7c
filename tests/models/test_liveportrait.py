"""LivePortrait compatibility: the five release files load key for key, head-pose maths on known answers, stitching
and retargeting, ONNX parity of every graph, and a real portrait animated by a real driver end to end."""

from __future__ import annotations

import json
import math

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED

from motionlab.geometry.head_pose import (
    bins_to_degrees,
    driving_keypoints,
    pose_keypoints,
    rotation_matrix,
    sample_volume,
)
from motionlab.geometry.landmarks import face_crop_matrix
from motionlab.models import create_model, load_model
from motionlab.models.liveportrait import PARTS
from motionlab.utils.checkpoint import WeightMismatchError

MANIFEST = SHARED / "reference" / "weights" / "liveportrait.json"
REAL = SHARED / "data" / "real"
# the architecture at a size that runs in milliseconds (same code, fewer channels; a 64 px input renders 128 px)
SMALL = dict(
    input_size=64,
    appearance_feature_extractor={"block_expansion": 8, "max_features": 32, "reshape_channel": 4, "reshape_depth": 8, "num_resblocks": 1},
    motion_extractor={"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]},
    warping_module={"block_expansion": 8, "max_features": 32, "reshape_channel": 4,
                    "dense_motion_params": {"block_expansion": 4, "max_features": 32, "num_blocks": 3, "reshape_depth": 8, "compress": 2}},
    spade_generator={"block_expansion": 8, "max_features": 32},
)


@pytest.fixture(scope="module")
def small_liveportrait():
    torch.manual_seed(0)
    return create_model("liveportrait", **SMALL).eval()


@pytest.fixture(scope="module")
def small_checkpoint(small_liveportrait, tmp_path_factory):
    """The small model as a motionlab checkpoint (its spec and weights), as a LivePortrait run writes it."""
    path = tmp_path_factory.mktemp("liveportrait") / "liveportrait.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in small_liveportrait.state_dict().items()},
                "motionlab": {"task": "liveportrait", "models": {"net": small_liveportrait.model_info.spec()}}}, path)
    return path


def _release_from_manifest(reference: dict) -> dict:
    """Release-layout state dicts of the manifest's shapes; every tensor holds its own key's index, so a key mapped
    to the wrong place shows. The stitching file keeps the release's DDP ``module.`` prefix."""
    release, index = {}, 0
    for part in PARTS:
        if part == "stitching_retargeting_module":
            release[part] = {}
            for mlp, shapes in reference[part].items():
                release[part][mlp] = {}
                for key, shape in shapes.items():
                    release[part][mlp][f"module.{key}"] = torch.full(shape, float(index))
                    index += 1
        else:
            release[part] = {}
            for key, shape in reference[part].items():
                release[part][key] = torch.full(shape, float(index)) if "num_batches" not in key else torch.tensor(index)
                index += 1
    return release


@pytest.mark.skipif(not MANIFEST.is_file(), reason="../shared/reference/weights/liveportrait.json is not present")
def test_release_files_load_key_for_key(tmp_path):
    """A folder with the five release files (in the release's sub-folders) loads strictly through create_model; every
    release tensor lands in the parameter the filter names, the ConvNeXt-V2 GRN reshaped for timm."""
    reference = json.loads(MANIFEST.read_text())
    release = _release_from_manifest(reference)
    for part, state in release.items():
        folder = tmp_path / ("retargeting_models" if part.startswith("stitching") else "base_models")
        folder.mkdir(exist_ok=True)
        torch.save(state, folder / f"{part}.pth")
    model = create_model("liveportrait", ckpt=tmp_path)
    ours = model.state_dict()
    counts = {part: sum(1 for key in ours if key.startswith(part + ".")) for part in PARTS}
    assert counts == {"appearance_feature_extractor": 107, "motion_extractor": 212, "warping_module": 97, "spade_generator": 182,
                      "stitching_retargeting_module": 28}
    me = release["motion_extractor"]
    expected = {
        "appearance_feature_extractor.resblocks_3d.3dr5.norm2.running_var": release["appearance_feature_extractor"]["resblocks_3d.3dr5.norm2.running_var"],
        "motion_extractor.detector.stem.0.weight": me["detector.downsample_layers.0.0.weight"],
        "motion_extractor.detector.stages.2.downsample.1.bias": me["detector.downsample_layers.2.1.bias"],
        "motion_extractor.detector.stages.2.blocks.8.mlp.grn.weight": me["detector.stages.2.8.grn.gamma"].reshape(-1),
        "motion_extractor.detector.stages.3.blocks.2.conv_dw.bias": me["detector.stages.3.2.dwconv.bias"],
        "motion_extractor.detector.head.norm.weight": me["detector.norm.weight"],
        "motion_extractor.fc_yaw.weight": me["detector.fc_yaw.weight"],
        "spade_generator.up_1.conv_s.weight_orig": release["spade_generator"]["up_1.conv_s.weight_orig"],
        "stitching_retargeting_module.retarget_eye.mlp.10.bias": release["stitching_retargeting_module"]["retarget_eye"]["module.mlp.10.bias"],
    }
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key
    # a release file missing from the folder is named
    (tmp_path / "base_models" / "warping_module.pth").unlink()
    with pytest.raises(WeightMismatchError, match=r"warping_module\.pth are missing"):
        create_model("liveportrait", ckpt=tmp_path)


def test_convnext_block_matches_the_release_formula(small_liveportrait):
    """timm's ConvNeXt-V2 block, run with the weights the filter mapped, computes the release's block:
    dwconv -> LayerNorm -> pwconv1 -> GELU -> GRN(gamma, beta) -> pwconv2, plus the input."""
    block = small_liveportrait.motion_extractor.detector.stages[1].blocks[0]
    torch.nn.init.normal_(block.mlp.grn.weight)
    torch.nn.init.normal_(block.mlp.grn.bias)
    x = torch.randn(2, block.conv_dw.in_channels, 6, 6)
    y = block.conv_dw(x).permute(0, 2, 3, 1)
    y = F.gelu(block.mlp.fc1(F.layer_norm(y, y.shape[-1:], block.norm.weight, block.norm.bias, 1e-6)))
    gx = torch.norm(y, p=2, dim=(1, 2), keepdim=True)
    y = block.mlp.grn.weight.view(1, 1, 1, -1) * (y * (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6))) + block.mlp.grn.bias.view(1, 1, 1, -1) + y
    expected = x + block.mlp.fc2(y).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_head_pose_known_answers():
    zero = torch.zeros(1)
    assert torch.allclose(rotation_matrix(zero, zero, zero), torch.eye(3)[None])
    yaw90 = rotation_matrix(zero, torch.tensor([90.0]), zero)
    assert torch.allclose(torch.tensor([[1.0, 0.0, 0.0]]) @ yaw90[0], torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6)
    pitch90 = rotation_matrix(torch.tensor([90.0]), zero, zero)
    assert torch.allclose(torch.tensor([[0.0, 1.0, 0.0]]) @ pitch90[0], torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-6)
    rotations = rotation_matrix(torch.tensor([10.0, -40.0]), torch.tensor([25.0, 70.0]), torch.tensor([-5.0, 15.0]))
    assert torch.allclose(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
    # a near one-hot over 66 bins of 3 deg: bin i reads i * 3 - 97.5
    logits = torch.full((2, 66), -1e4)
    logits[0, 32], logits[1, 62] = 0.0, 0.0
    assert torch.allclose(bins_to_degrees(logits), torch.tensor([-1.5, 88.5]))


def test_pose_keypoints_and_relative_driving_by_hand():
    canonical = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]]])
    expression = torch.tensor([[[0.0, 0.1, 0.0], [0.0, 0.0, 0.0]]])
    yaw90 = rotation_matrix(torch.zeros(1), torch.tensor([90.0]), torch.zeros(1))
    posed = pose_keypoints(canonical, yaw90, expression, torch.tensor([[2.0]]), torch.tensor([[0.5, -0.5, 9.0]]))
    # (1,0,0) -> (0,0,-1) + (0,0.1,0) -> x2 -> (0,0.2,-2) + (0.5,-0.5,0); (0,1,0.5) -> (0.5,1,0) -> (1,2,0) + t
    assert torch.allclose(posed, torch.tensor([[[0.5, -0.3, -2.0], [1.5, 1.5, 0.0]]]), atol=1e-6)

    def motion(yaw, exp, scale, t):
        return {"rotation": rotation_matrix(torch.zeros(1), torch.tensor([yaw]), torch.zeros(1)), "expression": exp,
                "scale": torch.tensor([[scale]]), "translation": torch.tensor([t])}

    source = motion(0.0, expression, 1.5, [0.1, 0.2, 0.3])
    initial = motion(20.0, torch.zeros(1, 2, 3), 2.0, [0.0, 0.0, 0.0])
    # the first driving frame leaves the source's keypoints where they are (t_z dropped)
    assert torch.allclose(driving_keypoints(canonical, source, initial, initial),
                          pose_keypoints(canonical, source["rotation"], expression, source["scale"], source["translation"]), atol=1e-6)
    # yaw +90 since the first frame, expression +0.2 on y of point 0, scale x2, t + (1, 0, 5)
    driving = motion(110.0, torch.tensor([[[0.0, 0.2, 0.0], [0.0, 0.0, 0.0]]]), 4.0, [1.0, 0.0, 5.0])
    expected = 3.0 * (canonical @ yaw90 + torch.tensor([[[0.0, 0.3, 0.0], [0.0, 0.0, 0.0]]])) + torch.tensor([1.1, 0.2, 0.0])
    assert torch.allclose(driving_keypoints(canonical, source, driving, initial), expected, atol=1e-5)


def test_animation_regions_and_absolute_driving_by_hand():
    """With zero canonical keypoints a frame's keypoints are scale * exp + t: each region drives only its part (the lip
    rows 6, 12, 14, 17, 19, 20; the eye rows 11, 13, 15, 16, 18; pose: t), the rest stays the source's; absolute driving
    of the whole expression takes the release's rows and coordinates from the driver, with the source's scale."""
    from motionlab.geometry.head_pose import EXPRESSION_ROWS, EYE_ROWS, LIP_ROWS

    canonical = torch.zeros(1, 21, 3)
    eye = torch.eye(3).unsqueeze(0)

    def motion(exp, scale, t):
        return {"rotation": eye, "expression": exp, "scale": torch.tensor([[scale]]), "translation": torch.tensor([t])}

    torch.manual_seed(0)
    exp_s, exp_0, exp_d = torch.randn(1, 21, 3), torch.randn(1, 21, 3), torch.randn(1, 21, 3)
    source, initial, driving = motion(exp_s, 2.0, [0.1, 0.2, 0.0]), motion(exp_0, 1.0, [0.0, 0.0, 0.0]), motion(exp_d, 1.5, [0.3, -0.1, 0.7])
    moved = exp_s + exp_d - exp_0
    for region, rows in (("lip", LIP_ROWS), ("eyes", EYE_ROWS)):
        expected = exp_s.clone()
        expected[:, list(rows)] = moved[:, list(rows)]
        assert torch.allclose(driving_keypoints(canonical, source, driving, initial, region=region), 2.0 * expected + torch.tensor([0.1, 0.2, 0.0]), atol=1e-6)
    assert torch.allclose(driving_keypoints(canonical, source, driving, initial, region="pose"), 2.0 * exp_s + torch.tensor([0.4, 0.1, 0.0]), atol=1e-6)
    assert torch.allclose(driving_keypoints(canonical, source, driving, initial, region="all"), 3.0 * moved + torch.tensor([0.4, 0.1, 0.0]), atol=1e-6)
    expected = exp_s.clone()
    expected[:, list(EXPRESSION_ROWS)] = exp_d[:, list(EXPRESSION_ROWS)]
    expected[:, 3:5, 1], expected[:, 5, 2], expected[:, 8, 2], expected[:, 9, 1:] = exp_d[:, 3:5, 1], exp_d[:, 5, 2], exp_d[:, 8, 2], exp_d[:, 9, 1:]
    absolute = driving_keypoints(canonical, source, driving, initial, relative=False)
    assert torch.allclose(absolute, 2.0 * expected + torch.tensor([0.3, -0.1, 0.0]), atol=1e-6)
    with pytest.raises(ValueError, match="animation region"):
        driving_keypoints(canonical, source, driving, initial, region="hair")


def test_kalman_smoother_is_the_random_walk_posterior_mean():
    """The release's smoother (pykalman's RTS with identity models) is the posterior mean of a Gaussian random walk
    observed with noise, its prior centred on the first observation with unit variance: the solution of one
    tridiagonal system (known answer); a constant series comes back unchanged."""
    from motionlab.geometry.head_pose import kalman_smooth

    rng = np.random.default_rng(0)
    observed = np.cumsum(rng.normal(size=(30, 4)) * 0.05, axis=0) + rng.normal(size=(30, 4)) * 0.1
    for observation, process in ((1e-2, 1e-3), (3e-7, 1e-5)):
        frames = len(observed)
        difference = np.diff(np.eye(frames), axis=0)
        precision = np.eye(frames) / observation + difference.T @ difference / process
        precision[0, 0] += 1.0
        rhs = observed / observation
        rhs[0] += observed[0]
        np.testing.assert_allclose(kalman_smooth(observed, observation, process), np.linalg.solve(precision, rhs), rtol=1e-7, atol=1e-10)
    constant = np.tile(np.array([[0.3, -1.0]]), (12, 1))
    np.testing.assert_allclose(kalman_smooth(constant), constant, atol=1e-12)
    # smoothing more (a larger observation variance) shrinks the frame-to-frame steps
    assert np.abs(np.diff(kalman_smooth(observed, 1e-2, 1e-3), axis=0)).mean() < np.abs(np.diff(observed, axis=0)).mean()


def test_video_to_video_keypoints_by_hand():
    """A source video: each source frame is driven by the driver frame of the same index; relative motion moves the
    frame's rotation and the region's expression rows by the driver's change since its first frame, while scale and
    translation stay the source frame's (absolute posed driving: the driver's translation)."""
    from motionlab.geometry.head_pose import EXPRESSION_ROWS, source_video_keypoints

    frames = 3
    canonical = torch.zeros(frames, 21, 3)
    torch.manual_seed(1)

    def motion(exp, scale, t, yaw=0.0):
        return {"rotation": rotation_matrix(torch.zeros(frames), torch.full((frames,), yaw), torch.zeros(frames)),
                "expression": exp.expand(frames, -1, -1), "scale": torch.full((frames, 1), scale), "translation": torch.tensor([t] * frames)}

    exp_s, exp_0, exp_d = torch.randn(1, 21, 3), torch.randn(1, 21, 3), torch.randn(1, 21, 3)
    source, driving = motion(exp_s, 2.0, [0.1, 0.2, 0.3]), motion(exp_d, 1.5, [0.3, -0.1, 0.7])
    initial = {key: value[:1] for key, value in motion(exp_0, 1.0, [0.0, 0.0, 0.0]).items()}
    expected = exp_s.clone()
    moved = exp_s + exp_d - exp_0
    expected[:, list(EXPRESSION_ROWS)] = moved[:, list(EXPRESSION_ROWS)]
    expected[:, 3:5, 1], expected[:, 5, 2], expected[:, 8, 2], expected[:, 9, 1:] = moved[:, 3:5, 1], moved[:, 5, 2], moved[:, 8, 2], moved[:, 9, 1:]
    # constant motion through time: smoothing changes nothing, so the rule shows exactly
    keypoints = source_video_keypoints(canonical, source, driving, initial)
    assert torch.allclose(keypoints, (2.0 * expected + torch.tensor([0.1, 0.2, 0.0])).expand(frames, -1, -1), atol=1e-5)
    absolute = source_video_keypoints(canonical, source, driving, initial, relative=False, region="pose")
    assert torch.allclose(absolute, (2.0 * exp_s + torch.tensor([0.3, -0.1, 0.0])).expand(frames, -1, -1), atol=1e-5)
    # a yaw that jitters between frames comes out smoother than it went in (the release's default variance smooths
    # lightly, 3e-7: a larger one, as a user may set, takes most of the jitter out)
    canonical = torch.randn(1, 21, 3).expand(frames * 4, -1, -1)
    yaws = torch.tensor([0.0, 6.0] * (frames * 2))
    jittered = {"rotation": rotation_matrix(torch.zeros(len(yaws)), yaws, torch.zeros(len(yaws))), "expression": torch.zeros(len(yaws), 21, 3),
                "scale": torch.ones(len(yaws), 1), "translation": torch.zeros(len(yaws), 3)}
    still = {**jittered, "rotation": torch.eye(3).expand(len(yaws), -1, -1)}
    first = {key: value[:1] for key, value in still.items()}
    raw = driving_keypoints(canonical, still, jittered, first)
    light, strong = (source_video_keypoints(canonical, still, jittered, first, observation_variance=v) for v in (3e-7, 1e-3))
    steps = {name: keypoints.diff(dim=0).abs().mean() for name, keypoints in (("raw", raw), ("light", light), ("strong", strong))}
    assert steps["strong"] < 0.5 * steps["raw"] and steps["strong"] < steps["light"] < steps["raw"]
    with pytest.raises(ValueError, match="pairs frames"):
        source_video_keypoints(canonical, still, {key: value[:2] for key, value in jittered.items()}, first)


def test_driving_options_of_the_release(small_liveportrait):
    """driving_multiplier scales the motion away from the portrait's keypoints (0: the portrait's own); expression-
    friendly driving gives pose-friendly's keypoints for an image source, as in the release (its first-frame keypoints
    are the source's, so its hull multiplier is 1)."""
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor

    size = small_liveportrait.model_info.input_size[0]
    torch.manual_seed(1)
    portrait, driver = torch.rand(1, 3, size, size), torch.rand(2, 3, size, size)

    def rendered(**options):
        out = LivePortraitPredictor(small_liveportrait, stitching=False, **options)(portrait, driver, driver[:1], {})
        return torch.cat([out["generated_keypoints"].value, out["generated_keypoints"].depth.unsqueeze(-1)], dim=-1)

    with torch.no_grad():
        x_portrait = small_liveportrait.keypoints(small_liveportrait.motion_extractor.motion(portrait))
    assert torch.allclose(rendered(driving_multiplier=0.0), x_portrait.expand(2, -1, -1), atol=1e-6)
    pose = rendered()
    assert torch.allclose(rendered(driving_option="expression-friendly"), pose, atol=1e-5)
    assert torch.allclose(rendered(driving_multiplier=2.0) - x_portrait, 2 * (pose - x_portrait), atol=1e-5)
    with pytest.raises(Exception, match="animation_region"):
        LivePortraitPredictor(small_liveportrait, animation_region="hair")
    # a release folder's frames are truncated to uint8 as its parse_output does; a checkpoint trained here rounds
    from motionlab.data.images import to_uint8

    assert LivePortraitPredictor.from_models({"net": small_liveportrait}, small_liveportrait.model_info.published_settings).quantize == "floor"
    assert LivePortraitPredictor.from_models({"net": small_liveportrait}, {}).quantize == "round"
    assert to_uint8(torch.full((3, 1, 1), 0.999), "floor").item(0) == 254 and to_uint8(torch.full((3, 1, 1), 0.999)).item(0) == 255
    # the release's lip normalisation adds the lip MLP's offset to closed lips, for a portrait with open lips only
    from motionlab.data.crops import PortraitCrop

    image = np.zeros((size, size, 3), np.uint8)
    for lips, moved in ((0.2, True), (0.01, False)):
        crop = PortraitCrop(np.eye(2, 3), size, image, np.array([[0.3, 0.3]]), np.array([[lips]]))
        out = LivePortraitPredictor(small_liveportrait, stitching=False, normalize_lip=True)(portrait, driver, driver[:1], {"crop": crop})
        normalised = torch.cat([out["generated_keypoints"].value, out["generated_keypoints"].depth.unsqueeze(-1)], dim=-1)
        with torch.no_grad():
            offset = small_liveportrait.stitching_retargeting_module.retarget_lips(x_portrait, torch.tensor([[lips, 0.0]]))
        assert torch.allclose(normalised, pose + (offset if moved else 0.0), atol=1e-5)


def test_stitching_and_retargeting(small_liveportrait):
    module = small_liveportrait.stitching_retargeting_module
    kp_source, kp_driving = torch.randn(3, 21, 3), torch.randn(3, 21, 3)
    assert module.stitch(kp_source, kp_driving).shape == (3, 21, 3)
    assert module.retarget_eyes(kp_source, torch.rand(3, 3)).shape == (3, 21, 3)
    assert module.retarget_lips(kp_source, torch.rand(3, 2)).shape == (3, 21, 3)
    last = module.retarget_shoulder.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat([torch.full((63,), 0.01), torch.tensor([0.1, -0.2])]))
        # the 63 per-keypoint offsets, plus the shared (t_x, t_y) on x and y only
        assert torch.allclose(module.stitch(kp_source, kp_driving) - kp_driving, torch.tensor([0.11, -0.19, 0.01]).expand(3, 21, 3), atol=1e-6)


def test_retargeting_moves_the_source_keypoints_as_the_release_does(small_liveportrait):
    """With relative motion, eye / lip retargeting renders x_s + delta (the driver's motion is replaced, as in the
    release's pipeline); with absolute motion x_d + delta. Checked on constructed keypoints, then through the predictor
    with constructed retargeting MLPs (a constant offset) and stitching off: whatever the driver, the keypoints rendered
    are the portrait's plus that offset."""
    import copy

    from motionlab.data.crops import PortraitCrop
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor, retargeted_keypoints

    x_source, x_driving, delta = torch.randn(2, 21, 3), torch.randn(2, 21, 3), torch.randn(2, 21, 3)
    assert torch.equal(retargeted_keypoints(x_source, x_driving, delta, relative=True), x_source + delta)
    assert torch.equal(retargeted_keypoints(x_source, x_driving, delta, relative=False), x_driving + delta)
    net = copy.deepcopy(small_liveportrait)
    offset = torch.linspace(-0.05, 0.05, 63)
    with torch.no_grad():
        for mlp in (net.stitching_retargeting_module.retarget_eye, net.stitching_retargeting_module.retarget_mouth):
            mlp.mlp[-1].weight.zero_()
            mlp.mlp[-1].bias.copy_(offset)
    size = net.model_info.input_size[0]
    crop = PortraitCrop(np.eye(2, 3), size, np.zeros((size, size, 3), np.uint8), np.array([[0.3, 0.3]]), np.array([[0.1]]))
    predictor = LivePortraitPredictor(net, stitching=False, eye_retargeting=True, lip_retargeting=True)
    portrait, driver = torch.rand(1, 3, size, size), torch.rand(2, 3, size, size)
    context = {"crop": crop, "driver_eyes": np.array([[0.2], [0.4]], np.float32), "driver_lips": np.array([[0.05], [0.3]], np.float32)}
    out = predictor(portrait, driver, driver[:1], context)
    with torch.no_grad():
        x_portrait = net.keypoints(net.motion_extractor.motion(portrait))
    rendered = torch.cat([out["generated_keypoints"].value, out["generated_keypoints"].depth.unsqueeze(-1)], dim=-1)
    assert torch.allclose(rendered, (x_portrait + 2 * offset.view(21, 3)).expand(2, -1, -1), atol=1e-5)


def test_depth_sliced_volume_sampling_equals_grid_sample():
    torch.manual_seed(0)
    volume = torch.randn(2, 3, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(2, 4, 6, 7, 3, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    assert torch.allclose(sample_volume(volume, grid), sample_volume(volume, grid, depth_sliced=True), atol=1e-12)
    small = (volume[:1, :1, :3, :3, :3].detach().requires_grad_(), (grid[:1, :2, :2, :2] * 0.9).detach().requires_grad_())
    assert torch.autograd.gradcheck(lambda v, g: sample_volume(v, g, depth_sliced=True), small)


def test_face_crop_is_upright_and_centred():
    """The crop puts the eyes' centre straight above the mouth's, the landmarks inside and centred; a rolled, moved
    copy of the face crops to the same place."""
    from motionlab.data.landmarks import DlibLandmarks
    from motionlab.data.video_io import read_image

    portrait = REAL / "portraits" / "portrait_s9.jpg"
    if not portrait.is_file():
        pytest.skip("../shared/data/real is not present")
    points = DlibLandmarks()(read_image(portrait))
    angle = math.radians(30)
    rolled = (points - points.mean(0)) @ np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]) + 400
    crops = []
    for landmarks in (points, rolled):
        matrix = face_crop_matrix(landmarks, 256)
        cropped = landmarks @ matrix[:, :2].T + matrix[:, 2]
        # the release's axis points on 68 landmarks: the eye corners' centre and the mouth corners' centre
        eyes, mouth = cropped[[36, 39, 42, 45]].mean(0), cropped[[48, 54]].mean(0)
        assert abs(eyes[0] - mouth[0]) < 1e-6 and eyes[1] < mouth[1]
        assert np.all((cropped > 0) & (cropped < 256))
        assert abs(cropped[:, 0].min() + cropped[:, 0].max() - 256) < 1e-6
        crops.append(cropped)
    assert np.allclose(crops[0], crops[1], atol=1e-6)


def test_onnx_parity_of_every_graph(small_checkpoint, tmp_path):
    """motionlab-export onnx's path: the checkpoint's predictor, then every graph exported and parity-checked."""
    pytest.importorskip("onnxruntime")
    from motionlab.inference.export import export_predictor_onnx

    calls = []
    report = export_predictor_onnx(str(small_checkpoint), str(tmp_path / "onnx"), on_graph=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 8) for i in range(1, 9)]  # the progress callback: each graph as it is written and checked
    assert set(report["graphs"]) == {"appearance_feature_extractor", "motion_extractor", "warping_module", "warping_module_4d",
                                     "spade_generator", "stitching", "retarget_eye", "retarget_lip"}
    assert report["graphs"]["warping_module"]["opset"] == 20 and report["graphs"]["warping_module_4d"]["opset"] == 17
    assert all(graph["max_abs_difference"] <= 1e-4 for graph in report["graphs"].values())
    assert all((tmp_path / "onnx" / f"{name}.onnx").is_file() for name in report["graphs"])


def test_real_portrait_animated_end_to_end(small_liveportrait, small_checkpoint, tmp_path):
    """A real portrait driven by a real clip through motionlab-animate's path (random weights, small widths): face
    crop, relative driving, stitching, eye and lip retargeting from the driver's dlib landmarks, paste-back."""
    from motionlab.inference.animate import animate_files
    from motionlab.inference.sequence import read_sequence

    portrait, driver = REAL / "portraits" / "portrait_s9.jpg", REAL / "drivers" / "human_d0.mp4"
    if not portrait.is_file():
        pytest.skip("../shared/data/real is not present")
    ckpt = small_checkpoint
    # a state dict saved by motionlab (its own layout, its spec) loads back strictly
    again = load_model(ckpt)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in small_liveportrait.state_dict().items())
    summary = animate_files(ckpt, portrait, driver, tmp_path / "out.mp4", gif=tmp_path / "side.gif", max_frames=3, batch_size=2,
                            sequence_out=tmp_path / "seq.npz",
                            predictor={"eye_retargeting": True, "lip_retargeting": True, "crop_driver": True})
    assert summary["frames"] == 3
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    # pasted back: the portrait's own size, and away from the face the portrait itself
    assert len(frames) == 3 and frames[0].shape == (1280, 720, 3)
    from motionlab.data.video_io import read_image

    original = read_image(portrait)
    assert np.abs(frames[0][1100:, :].astype(int) - original[1100:, :]).mean() < 3
    sequence = read_sequence(tmp_path / "seq.npz")
    assert sequence.generated.shape == (3, 128, 128, 3) and sequence.driver.shape == (3, 128, 128, 3)
    assert set(sequence.layers) == {"driver_keypoints", "generated_keypoints"}
    with pytest.raises(Exception, match="adapt_movement_scale"):
        animate_files(ckpt, portrait, driver, tmp_path / "again.mp4", max_frames=1, predictor={"adapt_movement_scale": True})


def test_real_portrait_with_the_release_crop_models(small_checkpoint, tmp_path):
    """The same path with LivePortrait's own crop models (stand-in ONNX graphs in the release layout, given as
    predictor.crop_models): faces found by SCRFD, cropped on the 106 points, measured on the 203; the result says so.
    Without them, dlib's 68 points, with a warning."""
    from conftest import liveportrait_crop_models

    from motionlab.inference.animate import animate_files

    portrait, driver = REAL / "portraits" / "portrait_s9.jpg", REAL / "drivers" / "human_d0.mp4"
    if not portrait.is_file():
        pytest.skip("../shared/data/real is not present")
    folder = liveportrait_crop_models(tmp_path / "pretrained_weights")
    summary = animate_files(small_checkpoint, portrait, driver, tmp_path / "out.mp4", max_frames=2, batch_size=2,
                            predictor={"eye_retargeting": True, "lip_retargeting": True, "crop_models": str(folder)})
    assert summary["frames"] == 2 and summary["crop_model"] == "insightface106+landmark203"
    assert animate_files(small_checkpoint, portrait, driver, tmp_path / "dlib.mp4", max_frames=1)["crop_model"] == "dlib68"
    with pytest.raises(Exception, match="does not hold LivePortrait's crop models"):
        animate_files(small_checkpoint, portrait, driver, tmp_path / "bad.mp4", max_frames=1, predictor={"crop_models": str(tmp_path)})


def test_video_to_video_on_a_real_clip(small_checkpoint, tmp_path):
    """A real talking clip as the source, a real driver: the face tracked and cropped in every source frame (dlib, then
    the release's crop models), motion smoothed, each result pasted back into its own source frame at the source's size
    and rate; as many frames as the shorter clip. A model without video-to-video refuses a video portrait by name."""
    from conftest import liveportrait_crop_models

    from motionlab.inference.animate import animate_files
    from motionlab.utils.errors import InputError

    source, driver = REAL / "drivers" / "human_talk_d6.mp4", REAL / "drivers" / "human_d0.mp4"
    if not source.is_file():
        pytest.skip("../shared/data/real is not present")
    summary = animate_files(small_checkpoint, source, driver, tmp_path / "v2v.mp4", gif=tmp_path / "side.gif", max_frames=3, batch_size=2,
                            predictor={"eye_retargeting": True, "lip_retargeting": True})
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        size, rate = (stream.codec_context.height, stream.codec_context.width), float(stream.average_rate)
    with av.open(str(tmp_path / "v2v.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert summary["frames"] == 3 and summary["fps"] == pytest.approx(rate) and summary["crop_model"] == "dlib68"
    assert len(frames) == 3 and frames[0].shape[:2] == size
    folder = liveportrait_crop_models(tmp_path / "pretrained_weights")
    summary = animate_files(small_checkpoint, source, driver, tmp_path / "release.mp4", max_frames=2, batch_size=1,
                            predictor={"crop_models": str(folder), "normalize_lip": True})
    assert summary["frames"] == 2 and summary["crop_model"] == "insightface106+landmark203"
    tiny = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    animator = tmp_path / "animator.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in tiny.state_dict().items()},
                "motionlab": {"task": "animator", "models": {"net": tiny.model_info.spec()}}}, animator)
    with pytest.raises(InputError, match="is a video; animator_v1 animates a still portrait"):
        animate_files(animator, source, driver, tmp_path / "no.mp4", max_frames=1)


def test_a_given_crop_box_for_faces_no_detector_finds(small_liveportrait):
    """predictor.crop_box (the animals release's path, whose detector is CUDA-only): the box, made square about its
    centre, fills the 512 crop; "centre" takes the largest centred square; retargeting, which needs the face measured,
    is refused; a malformed box names the option."""
    from motionlab.data.crops import box_crop_matrix
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor

    matrix = box_crop_matrix([100, 50, 300, 350], (400, 600), 512)
    corners = np.array([[50.0, 50.0], [350.0, 350.0]]) @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(corners, [[0.0, 0.0], [512.0, 512.0]])
    centre = box_crop_matrix("centre", (400, 600), 512)
    assert np.allclose(np.array([[299.5, 199.5]]) @ centre[:, :2].T + centre[:, 2], [[256.0, 256.0]]) and np.isclose(centre[0, 0], 512 / 400)
    predictor = LivePortraitPredictor(small_liveportrait, crop_box="centre")
    image = np.random.RandomState(0).randint(0, 255, (400, 600, 3), np.uint8)
    portrait, context = predictor.prepare_portrait(image)
    assert portrait.shape[-2:] == small_liveportrait.model_info.input_size and context["crop"].eyes is None
    retargeting = LivePortraitPredictor(small_liveportrait, crop_box="centre", eye_retargeting=True)
    with pytest.raises(Exception, match="crop_box"):
        retargeting(portrait, portrait, portrait, {**context, "driver_eyes": np.zeros((1, 1)), "driver_lips": np.zeros((1, 1))})
    with pytest.raises(Exception, match="crop_box must be"):
        LivePortraitPredictor(small_liveportrait, crop_box=[10, 10, 5, 20])


def test_driving_video_crop_is_one_averaged_box(small_liveportrait):
    """crop_driver as the release's crop_driving_video: each frame's crop square (scale 2.2, up 0.1) around the tracked
    face, one box for the clip (their mean), every frame cropped with it into 512 px, no rotation; without the scan
    the predictor refuses to guess a box."""
    import cv2

    from motionlab.data.crops import box_crop_matrix
    from motionlab.geometry.landmarks import face_crop_square
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor

    predictor = LivePortraitPredictor(small_liveportrait, crop_driver=True)
    base = np.random.RandomState(0).rand(68, 2) * 40 + 60
    predictor._tracked = lambda frame, previous: base + float(frame[0, 0, 0])  # the face moves with the frame's first pixel
    frames = np.zeros((3, 200, 240, 3), np.uint8)
    frames[:, 0, 0, 0] = [0, 10, 20]
    scan = predictor.scan_driver([frames[:2], frames[2:]])
    boxes = []
    for shift in (0.0, 10.0, 20.0):
        centre, side, _ = face_crop_square(base + shift, 2.2, vy_ratio=-0.1)
        boxes.append([centre[0] - side / 2, centre[1] - side / 2, centre[0] + side / 2, centre[1] + side / 2])
    assert np.allclose(scan["driver_box"], np.mean(boxes, axis=0))
    driver, _ = predictor.prepare_driver(frames, scan)
    matrix = box_crop_matrix(list(scan["driver_box"]), (200, 240), 512)
    size = small_liveportrait.model_info.input_size[0]
    expected = cv2.resize(cv2.warpAffine(frames[1], matrix, (512, 512), flags=cv2.INTER_LINEAR), (size, size))
    assert torch.allclose(driver[1], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    with pytest.raises(Exception, match="scan_driver"):
        predictor.prepare_driver(frames)


def test_paste_back_through_the_release_mask_template(tmp_path):
    """With the release's mask template the crop goes back as its paste_back does: mask * warped + (1 - mask) *
    portrait, truncated; a constant mask of 1 gives the warped crop, one of 0 the portrait."""
    from PIL import Image

    from motionlab.data.crops import PortraitCrop, paste_into_portrait, read_paste_mask

    portrait = np.full((40, 60, 3), 100, np.uint8)
    crop = PortraitCrop(np.array([[2.0, 0.0, -20.0], [0.0, 2.0, -10.0]]), 32, portrait, None, None)  # the crop sees x 10..26, y 5..21
    generated = np.full((32, 32, 3), 201, np.uint8)
    half = np.full((32, 32, 3), 128, np.uint8)
    Image.fromarray(half).save(tmp_path / "mask_template.png")
    mask = read_paste_mask(tmp_path / "mask_template.png")
    pasted = paste_into_portrait(generated, crop, mask)
    assert pasted[12, 18].tolist() == [int(128 / 255 * 201 + (1 - 128 / 255) * 100)] * 3
    assert pasted[2, 2].tolist() == [100, 100, 100]
    assert np.all(paste_into_portrait(generated, crop, np.ones((32, 32, 3), np.float32))[8:18, 13:23] == 201)


def test_landmark_guidance_targets_span_the_frame_corner_to_corner():
    from motionlab.losses.landmarks import GUIDANCE_LANDMARKS, normalized_landmarks

    landmarks = torch.zeros(1, 68, 2)
    landmarks[0, GUIDANCE_LANDMARKS[0]] = torch.tensor([0.0, 63.0])
    landmarks[0, GUIDANCE_LANDMARKS[1]] = torch.tensor([31.5, 31.5])
    guided = normalized_landmarks(landmarks, 64)
    assert guided.shape == (1, 10, 2)
    assert guided[0, 0].tolist() == pytest.approx([-1.0, 1.0]) and guided[0, 1].tolist() == pytest.approx([0.0, 0.0])


def _face_landmarks(eyes: tuple[float, float, float, float], mouth: tuple[float, float, float, float]) -> torch.Tensor:
    """(1, 68, 2) landmarks whose eye points fill the box ``eyes`` and mouth points the box ``mouth`` (x0, y0, x1, y1)."""
    points = torch.full((1, 68, 2), 32.0)
    for part, (x0, y0, x1, y1) in ((slice(36, 48), eyes), (slice(48, 68), mouth)):
        n = part.stop - part.start
        points[0, part, 0] = torch.linspace(x0, x1, n)
        points[0, part, 1] = torch.tensor([y0, y1]).repeat(n // 2 + 1)[:n]
    return points


def test_part_views_crop_around_the_landmarks_and_pass_gradients():
    from motionlab.losses.landmarks import part_views

    image = torch.zeros(1, 3, 64, 64, requires_grad=True)
    with torch.no_grad():
        image[:, :, 20:24, 16:48] = 1.0  # an eye band, where the eye landmarks are
    landmarks = _face_landmarks(eyes=(16, 20, 47, 23), mouth=(24, 44, 40, 50))
    views = part_views(image, landmarks, crop_fraction=0.25)
    assert views["face"] is image and views["eyes"].shape == views["mouth"].shape == (1, 3, 16, 16)
    assert views["eyes"].mean() > 0.05 and views["mouth"].abs().max() == 0  # the band is in the eye crop, not the mouth's
    views["mouth"].sum().backward()
    rows = image.grad[0, 0].abs().sum(dim=1).nonzero().flatten()
    assert rows.min() >= 30 and rows.max() <= 63  # the mouth crop reads the lower face only
    assert part_views(image, None, 0.25).keys() == {"face"}


def test_gan_critics_learn_to_tell_real_from_generated_and_the_generator_term_follows():
    """Critic steps on real (bright) against generated (dark) images lower the critics' loss and raise the realness
    gap; R1 is positive; the generator's term is the non-saturating loss averaged over the three views."""
    from motionlab.losses.liveportrait import LivePortraitLoss
    from motionlab.models.liveportrait import LivePortraitDiscriminator

    torch.manual_seed(0)
    critic = LivePortraitDiscriminator(block_expansion=8, max_features=32, num_blocks=3, part_blocks=2)
    loss = LivePortraitLoss(perceptual=None, reconstruction=0, l1=0, perceptual_weight=0, equivariance=0, keypoint_prior=0,
                            deformation_prior=0, head_pose=0, landmark_guidance=0, gan=1.0).bind(discriminator=critic)
    batch = {"driver": 0.7 + 0.3 * torch.rand(4, 3, 64, 64), "driver_landmarks": _face_landmarks((16, 20, 47, 23), (24, 44, 40, 50)).expand(4, -1, -1)}
    outputs = {"image": 0.3 * torch.rand(4, 3, 64, 64)}
    optimizer = torch.optim.Adam(critic.parameters(), 1e-3)
    first = loss(outputs, batch, phase="discriminator")
    assert first["gradient_penalty"] > 0 and set(first) == {"discriminator", "d_real", "d_fake", "gradient_penalty", "total"}
    for _ in range(30):
        terms = loss(outputs, batch, phase="discriminator")
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    assert terms["discriminator"] < first["discriminator"] and terms["d_real"] - terms["d_fake"] > first["d_real"] - first["d_fake"] + 0.2
    from motionlab.losses.landmarks import part_views

    logits = critic(part_views(outputs["image"], batch["driver_landmarks"], critic.crop_fraction))
    expected = sum(torch.nn.functional.softplus(-value).mean() for value in logits.values()) / 3
    assert loss(outputs, batch)["gan"].item() == pytest.approx(expected.item(), rel=1e-6) and len(logits) == 3
    with pytest.raises(ValueError, match="phase must be"):
        loss(outputs, batch, phase="critic")


def test_task_refuses_half_a_gan_and_unknown_retargeting(small_liveportrait):
    from motionlab.losses.liveportrait import StitchingLoss
    from motionlab.models.liveportrait import LivePortraitDiscriminator
    from motionlab.tasks.liveportrait import LivePortraitTask
    from motionlab.utils.errors import InputError

    adam = lambda params: torch.optim.Adam(params)  # noqa: E731
    with pytest.raises(InputError, match="model.discriminator and model.discriminator_optimizer go together"):
        LivePortraitTask(small_liveportrait, StitchingLoss(), adam, discriminator=LivePortraitDiscriminator(8, 32, 2, 1))
    with pytest.raises(InputError, match="trains with stage 1 only"):
        LivePortraitTask(small_liveportrait, StitchingLoss(), adam, stage=2, discriminator=LivePortraitDiscriminator(8, 32, 2, 1),
                         discriminator_optimizer=adam)
    with pytest.raises(InputError, match="model.retargeting must be one of"):
        LivePortraitTask(small_liveportrait, StitchingLoss(), adam, stage=2, retargeting="brows")


def test_retargeting_pairs_change_only_their_part_and_measure_its_openness(toy_world):
    from motionlab.data.datasets import discover_clips
    from motionlab.data.retargeting import RetargetingPairs

    _, records = discover_clips(toy_world)
    eyes = RetargetingPairs(records[:2], image_size=64, part="eyes", samples_per_identity=6, seed=0)
    lips = RetargetingPairs(records[:2], image_size=64, part="lips", samples_per_identity=6, seed=0)
    assert len(eyes) == 12
    for pairs, rows in ((eyes, slice(18, 36)), (lips, slice(36, 60))):
        sample = pairs[4]
        assert torch.equal(sample["ratios"], pairs[4]["ratios"])  # fixed by the seed
        changed = (sample["target"] - sample["portrait"]).abs().amax(dim=0) > 0.05
        assert changed.any() and not changed[: rows.start].any() and not changed[rows.stop :].any()
    # a closed eye (blink 1) measures below the open portrait's ratios; training pairs are drawn afresh
    ratios = torch.stack([eyes[i]["ratios"] for i in range(6)])
    assert ratios.shape == (6, 3) and torch.all(ratios[:, 2] <= ratios[:, :2].mean(dim=1) + 1e-6)
    assert lips[0]["ratios"].shape == (2,)
    fresh = RetargetingPairs(records[:1], image_size=64, part="lips", samples_per_identity=2)
    assert not torch.equal(fresh[0]["target"], fresh[0]["target"]) or not torch.equal(fresh[0]["ratios"], fresh[0]["ratios"])


def test_stage2_trains_its_mlp_alone_and_leaves_the_base_statistics(small_liveportrait):
    """Stage 2 (eye retargeting here): the base is in eval mode from the start (Lightning never calls train() on the
    task), so a training step moves the eye MLP and nothing else: not the base's weights, nor its batch-norm buffers."""
    import copy

    from motionlab.losses.liveportrait import RetargetingLoss
    from motionlab.tasks.liveportrait import LivePortraitTask

    task = LivePortraitTask(copy.deepcopy(small_liveportrait).train(), RetargetingLoss(), lambda params: torch.optim.Adam(params, 1e-2),
                            stage=2, retargeting="eyes")
    assert not task.net.appearance_feature_extractor.training and not task.net.warping_module.training
    before = {key: value.clone() for key, value in task.net.state_dict().items()}
    optimizer = task.configure_optimizers()
    # 128 px frames: the small model takes them at 64 px and renders 128 px
    batch = {"portrait": torch.rand(2, 3, 128, 128), "target": torch.rand(2, 3, 128, 128), "ratios": torch.tensor([[0.3, 0.3, 0.05], [0.3, 0.3, 0.2]])}
    optimizer.zero_grad()
    task.training_step(batch, 0).backward()
    optimizer.step()
    changed = {key for key, value in task.net.state_dict().items() if not torch.equal(value, before[key])}
    assert changed and all(key.startswith("stitching_retargeting_module.retarget_eye.") for key in changed)


def test_retargeting_region_error_measures_only_the_pixels_the_target_changed():
    from motionlab.losses.liveportrait import RetargetingLoss

    source = torch.zeros(1, 3, 8, 8)
    target = source.clone()
    target[..., 2:4, 2:6] = 1.0  # an eye opened: 8 pixels changed
    unmoved = source + 0.1  # off everywhere by 0.1, and by 0.9 where the eye should be
    terms = RetargetingLoss()({"image": target, "offset": torch.zeros(1, 4, 3), "unmoved": unmoved}, {"portrait": source, "target": target})
    assert terms["retargeting_error"] == 0 and terms["region_error"] == 0
    assert terms["unretargeted_region_error"].item() == pytest.approx(0.9)
    assert terms["unretargeted_error"].item() == pytest.approx((8 * 0.9 + 56 * 0.1) / 64)



def test_fast_convolutions_stay_within_the_stated_bound_through_the_full_generator():
    """Winograd / FFT convolutions through LivePortrait's full-size SPADE generator (74 convolutions, random weights):
    within the 1e-3 the config states (a quarter of a uint8 level; 4e-4 measured), and the feature extractor within 1e-5."""
    import copy

    from motionlab.models.fast_conv import use_fast_convolutions

    torch.manual_seed(0)
    full = create_model("liveportrait").eval()
    generator, extractor = full.spade_generator, full.appearance_feature_extractor
    feature, image = torch.randn(1, 256, 64, 64), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        for network, inputs, bound in ((generator, feature, 1e-3), (extractor, image, 1e-5)):
            fast = copy.deepcopy(network)
            use_fast_convolutions(fast, algorithm="nnpack")
            assert (fast(inputs) - network(inputs)).abs().max() < bound


def test_predictor_matches_liveportraits_own_pipeline_loop(small_liveportrait):
    """motionlab's LivePortrait predictor (portrait state once per clip, batches of 3, expression-friendly relative motion
    with stitching, every eligible convolution forced to Winograd / FFT) renders the frames of LivePortrait's own
    ``execute`` loop (benchmarks/liveportrait_reference.py: motion template, batch 1, direct convolutions), the loop
    the pipeline benchmark times it against; then with precision=int8's modules (W's hourglass and mask convolution) the
    renders stay above the 35 dB floor."""
    import copy

    from benchmarks.liveportrait_reference import liveportrait_execute
    from motionlab.data.images import to_uint8
    from motionlab.models.fast_conv import use_fast_convolutions
    from motionlab.models.int8 import quantize_modules
    from motionlab.tasks.liveportrait_predictor import LivePortraitPredictor

    generator = torch.Generator().manual_seed(3)
    base = torch.rand(1, 3, 64, 64, generator=generator)
    source = base.roll(5, dims=3)
    driving = torch.stack([base[0].roll(2 * i, dims=2) for i in range(5)])
    reference = np.stack(liveportrait_execute(small_liveportrait, source, driving))
    fast = copy.deepcopy(small_liveportrait)
    assert use_fast_convolutions(fast, algorithm="nnpack") > 10
    options = {"driving_option": "expression-friendly", "stitching": True, "crop_portrait": False, "paste_back": False}
    predictor = LivePortraitPredictor(fast, **options)
    with torch.inference_mode():
        ours = to_uint8(torch.cat([predictor(source, batch, driving[:1])["generated"] for batch in driving.split(3)]), "floor")
    assert ours.shape == reference.shape == (5, 128, 128, 3)
    assert np.abs(ours.astype(int) - reference).max() <= 1  # floor-quantized: a rounding flip is one level

    quantized = LivePortraitPredictor(copy.deepcopy(small_liveportrait), **options)
    names = quantized.net.model_info.int8_modules(quantized.net)
    quantize_modules(quantized.net, names, lambda: quantized(source, driving[:4], driving[:1]), "small.int8")
    with torch.inference_mode():
        int8 = quantized(source, driving, driving[:1])["generated"]
        fp32 = LivePortraitPredictor(small_liveportrait, **options)(source, driving, driving[:1])["generated"]
    psnr = 10 * np.log10(1 / float(((int8 - fp32) ** 2).mean()))
    assert 35 < psnr < 200, psnr
