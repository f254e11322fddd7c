"""TPSMM: key/shape parity with the release files, the thin-plate spline's known answers, the demo's three modes,
the training terms, and a real portrait animated end to end from a release-layout file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from scipy.spatial import ConvexHull

from motionlab.geometry import Keypoints, RandomAffineTPS, coordinate_grid
from motionlab.losses.descriptor import DescriptorLoss
from motionlab.models import create_model, load_pretrained
from motionlab.models.tpsmm import TPSMM_PARTS, tps_warp
from motionlab.tasks.descriptor_predictor import DescriptorPredictor
from motionlab.utils.checkpoint import WeightMismatchError

MANIFEST = Path(__file__).parent / "manifests" / "tpsmm.json"
VARIANTS = {"tpsmm_vox256": "vox-256", "tpsmm_taichi256": "taichi-256", "tpsmm_mgif256": "mgif-256", "tpsmm_ted384": "ted-384"}
SMALL = {"num_tps": 2, "generator": {"block_expansion": 8, "max_features": 32}, "dense_motion": {"block_expansion": 8, "max_features": 32,
                                                                                                 "num_blocks": 3, "scale_factor": 0.5}}


def test_the_manifest_here_is_the_shared_one():
    shared = SHARED / "reference" / "weights" / "tpsmm.json"
    if not shared.is_file():
        pytest.skip("../shared/reference/weights/tpsmm.json is not present (the copy here is checked against it in CI)")
    assert json.loads(MANIFEST.read_text()) == json.loads(shared.read_text())


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_has_the_release_keys_and_shapes(variant):
    """Each of the five networks, key for key and shape for shape, against the release manifest (built on the meta
    device: no weights allocated), with the release config's settings."""
    setting = json.loads(MANIFEST.read_text())[VARIANTS[variant]]
    with torch.device("meta"):
        model = create_model(variant)
    for part in TPSMM_PARTS:
        ours = {key: list(value.shape) for key, value in getattr(model, part).state_dict().items()}
        assert ours == setting["state_dicts"][part], f"{variant} {part}: {set(ours) ^ set(setting['state_dicts'][part])}"
    common = setting["config"]["common_params"]
    assert (model.num_tps, model.bg, model.dense_motion_network.multi_mask) == (common["num_tps"], common["bg"], common["multi_mask"])
    assert model.model_info.input_size == ((384, 384) if variant == "tpsmm_ted384" else (256, 256))


def _release_file(model, path: Path, parts=TPSMM_PARTS, value: float | None = None) -> Path:
    payload = {part: {key: (torch.full_like(tensor, value) if value is not None and tensor.is_floating_point() else tensor)
                      for key, tensor in getattr(model, part).state_dict().items()} for part in parts}
    torch.save({**payload, "optimizer": {}, "optimizer_bg_predictor": {}, "epoch": 99}, path)
    return path


def test_a_release_file_loads_key_for_key_and_a_wrong_one_is_named(tmp_path):
    release = _release_file(create_model("tpsmm_vox256"), tmp_path / "vox.pth.tar", value=0.25)
    loaded = create_model("tpsmm_vox256", ckpt=release)
    assert all(bool((value == 0.25).all()) for value in loaded.state_dict().values() if value.is_floating_point())
    # a file saved by the release's training code for a config without background (mgif) has no bg_predictor: the
    # fresh one gives the identity map, i.e. no background motion
    small = create_model("tpsmm_mgif256", **SMALL)
    without = _release_file(small, tmp_path / "mgif.pth.tar", parts=TPSMM_PARTS[:4])
    reloaded = load_pretrained(create_model("tpsmm_mgif256", **SMALL), without)
    bg = reloaded.bg_predictor(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert torch.equal(bg, torch.eye(3).expand(2, 3, 3))
    torch.save({"kp_detector": {}, "generator": {}}, tmp_path / "fomm.pth.tar")
    with pytest.raises(WeightMismatchError, match=r"missing .*arch=fomm_vox256"):
        create_model("tpsmm_vox256", ckpt=tmp_path / "fomm.pth.tar")


def test_thin_plate_spline_interpolates_and_reproduces_affine_maps():
    """Known answers of the spline without its ridge: control points go exactly onto their targets, and when the targets
    are an affine map of the control points the whole plane follows that affine map; with the release's ridge (0.01)
    the control points land near their targets."""
    torch.manual_seed(0)
    driving = (torch.rand(2, 3, 5, 2, dtype=torch.float64) * 2 - 1)
    source = driving + 0.1 * torch.randn_like(driving)
    at_controls = torch.stack([torch.stack([tps_warp(driving[b, k], driving[b:b + 1, k:k + 1], source[b:b + 1, k:k + 1], 0.0)[0, 0]
                                            for k in range(3)]) for b in range(2)])
    assert torch.allclose(at_controls, source, atol=1e-9)
    matrix, shift = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64), torch.tensor([0.05, -0.1], dtype=torch.float64)
    points = coordinate_grid(7, 7, dtype=torch.float64).view(-1, 2)
    warped = tps_warp(points, driving, driving @ matrix.T + shift, 0.0)
    assert torch.allclose(warped, (points @ matrix.T + shift).expand_as(warped), atol=1e-9)
    ridged = tps_warp(driving.view(2, 15, 2), driving, source)  # each spline at all points; its own 5 are the diagonal blocks
    own = torch.stack([ridged[:, k, 5 * k:5 * k + 5] for k in range(3)], dim=1)
    assert (own - source).abs().max() < 0.05


def test_the_three_modes_on_constructed_keypoints():
    """standard: the driver's keypoints as they are; relative: the portrait's plus the driver's motion since its first
    frame, scaled by sqrt of the hull-area ratio (the release demo's relative_kp); avd: the AVD network's output."""
    torch.manual_seed(0)
    net = create_model("tpsmm_vox256", **SMALL).eval()
    source = Keypoints(torch.rand(1, 10, 2) - 0.5, (64, 64))
    initial = Keypoints(0.5 * (torch.rand(1, 10, 2) - 0.5), (64, 64))
    driving = Keypoints(initial.value + 0.05, (64, 64))
    scale = np.sqrt(ConvexHull(source.value[0].numpy()).volume) / np.sqrt(ConvexHull(initial.value[0].numpy()).volume)
    standard = DescriptorPredictor(net, relative=False).transferred_keypoints(source, driving, initial)
    assert torch.equal(standard.value, driving.value)
    relative = DescriptorPredictor(net, relative=True, adapt_movement_scale=True).transferred_keypoints(source, driving, initial)
    assert torch.allclose(relative.value, source.value + 0.05 * scale, atol=1e-6)
    with torch.no_grad():
        avd = DescriptorPredictor(net, avd=True).transferred_keypoints(source, driving, initial)
        assert torch.allclose(avd.value, net.avd_network(source, driving).value)
    assert avd.value.shape == (1, 10, 2)
    # a release file runs its demo's relative mode: movement scale on unless the user says otherwise
    predictor = DescriptorPredictor.from_models({"net": net}, net.model_info.published_settings)
    assert predictor.adapt_movement_scale and predictor.relative and not predictor.avd


def test_training_terms_and_schedules():
    """The training forward gives the warp loss its maps and, from bg_start, the background maps; TPS dropout follows the
    schedule; every term of the TPSMM loss has a gradient reaching the networks it trains."""
    torch.manual_seed(0)
    net = create_model("tpsmm_vox256", **SMALL, schedule={"dropout_epoch": 2, "dropout_maxp": 0.3, "dropout_startp": 0.1,
                                                           "dropout_inc_epoch": 10, "bg_start": 1}).train()
    assert net.dropout_p == pytest.approx(0.1)
    net.set_epoch(1)
    assert net.dropout_p == pytest.approx(0.13) and net.background_active
    net.set_epoch(2)
    assert net.dropout_p == 0.0
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = net(source, driving)
    assert [m.shape[-1] for m in out["warped_encoder_maps"]] == [8, 16, 32, 64] and out["bg_param"].shape == (2, 3, 3)
    loss = DescriptorLoss(perceptual=lambda a, b: (a - b).abs().mean(), equivariance_jacobian=0.0, warp=10.0, background=10.0,
                          equivariance_kernel="tps").bind(kp_detector=net.kp_detector, driver_maps=net.inpainting_network.driver_maps,
                                                          bg_predictor=net.bg_predictor)
    terms = loss(out, {"portrait": source, "driver": driving})
    assert {"perceptual", "equivariance_value", "warp", "background", "total"} <= set(terms)
    terms["total"].backward()
    for part in ("kp_detector", "dense_motion_network", "inpainting_network", "bg_predictor"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(net, part).parameters()), part
    net.eval()
    assert "warped_encoder_maps" not in net(source, driving) and net(source, driving)["bg_param"] is None


def test_tps_equivariance_kernel_is_the_thin_plate_one():
    torch.manual_seed(0)
    fomm, tps = RandomAffineTPS(1, 0.0, 0.01, kernel="fomm"), RandomAffineTPS(1, 0.0, 0.01, kernel="tps")
    tps.control_params = fomm.control_params
    point = torch.tensor([[[0.3, -0.2]]])
    offsets = point.unsqueeze(2) - tps.control_points.unsqueeze(1)
    squared = offsets.square().sum(-1)
    expected = point + (squared * torch.log(squared + 1e-9) * tps.control_params).sum(-1, keepdim=True)
    assert torch.allclose(tps.warp_points(point), expected) and not torch.allclose(fomm.warp_points(point), expected)


def test_the_cached_source_features_give_the_full_forward():
    torch.manual_seed(0)
    net = create_model("tpsmm_vox256", **SMALL).eval()
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        kp_source, kp_driving = net.kp_detector(source).expand(3), net.kp_detector(driving)
        cached = net.animate(source.expand(3, -1, -1, -1), kp_driving, kp_source, source_features=net.encode_source(source))["prediction"]
        full = net.animate(source.expand(3, -1, -1, -1), kp_driving, kp_source)["prediction"]
    assert torch.allclose(cached, full, atol=1e-6) and full.shape == (3, 3, 64, 64)


def test_onnx_export_of_the_three_graphs_with_parity(tmp_path):
    """kp_detector, generator (the splines solved outside the graph: ONNX has no matrix inverse) and avd_network export
    and match PyTorch in onnxruntime at batch 1 and 2; the generator given the solved splines equals the full forward."""
    pytest.importorskip("onnxruntime")
    from motionlab.inference.export import export_graph_folder
    from motionlab.models.tpsmm import tps_parameters

    torch.manual_seed(0)
    net = create_model("tpsmm_vox256", input_size=64, **SMALL).eval()
    report = export_graph_folder(net, tmp_path / "onnx", "test")
    assert set(report["graphs"]) == {"kp_detector", "generator", "avd_network"}
    assert all(graph["max_abs_difference"] < 1e-4 for graph in report["graphs"].values())
    source, driving = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp_source, kp_driving = net.kp_detector(source), net.kp_detector(driving)
        params = tps_parameters(kp_driving.value.view(1, -1, 5, 2), kp_source.value.view(1, -1, 5, 2))
        given = net.animate(source, kp_driving, kp_source, tps_params=params)["prediction"]
        assert torch.equal(given, net.animate(source, kp_driving, kp_source)["prediction"])


def test_avd_stage_trains_the_avd_network_alone():
    """TPSMM's second stage: only the AVD network has gradients, the rest stays in eval mode; the loss rebuilds the
    driver's keypoints from randomly rescaled ones."""
    from motionlab.losses.descriptor import AVDLoss
    from motionlab.tasks.descriptor import DescriptorTask

    torch.manual_seed(0)
    net = create_model("tpsmm_vox256", input_size=64, **SMALL)
    task = DescriptorTask(net, AVDLoss(), optimizer=torch.optim.Adam, stage="avd").train()
    assert not net.kp_detector.training and net.avd_network.training
    batch = {"portrait": torch.rand(3, 3, 64, 64), "driver": torch.rand(3, 3, 64, 64)}
    terms = task.loss({}, batch)
    terms["total"].backward()
    assert set(terms) == {"kp_reconstruction", "total"}
    assert all(p.grad is None for p in net.kp_detector.parameters()) and any(p.grad is not None for p in net.avd_network.parameters())
    with pytest.raises(Exception, match="stage=avd"):
        DescriptorTask(create_model("fomm_vox256", input_size=64), AVDLoss(), optimizer=torch.optim.Adam, stage="avd")
