"""The field's metric networks from the user's files, on structural stand-ins (the standard architectures with random
weights, saved in the standard formats; an ONNX graph with InsightFace's input/output names): known answers, and every
result saying it is not comparable to a paper's number because the hash is not the standard file's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motionlab.metrics.standard import STANDARD_WEIGHTS, comparability, weights_record


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-random.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    """A small recognition graph with w600k_r50.onnx's interface: input ``input.1`` (B, 3, 112, 112), one 512-d output (read
    by position, as InsightFace does; the release names it 683, a name the exporter refuses)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 512)).eval()
    path = tmp_path_factory.mktemp("arcface") / "w600k_r50.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 112, 112),), str(path), input_names=["input.1"], output_names=["embedding"],
                      dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def _face() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[:320, 80:400].copy()).permute(2, 0, 1).float() / 255


def test_frechet_distance_of_two_gaussians_is_the_closed_form():
    """Through an identity feature map, two sets whose sample moments are known (mu +- a_i e_i: mean mu, diagonal
    covariance 2 a_i^2 / (2D - 1)) are at ||mu1 - mu2||^2 + sum (s1 + s2 - 2 sqrt(s1 s2)); a set against itself is 0."""
    from motionlab.metrics.frechet import FeatureFrechetDistance

    def samples(mu, a):
        steps = torch.diag(a)
        return torch.cat([mu + steps, mu - steps])

    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64)
    a1, a2 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64), torch.tensor([1.5, 1.0, 1.0], dtype=torch.float64)
    s1, s2 = 2 * a1.square() / 5, 2 * a2.square() / 5
    expected = (mu1 - mu2).square().sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum()
    metric = FeatureFrechetDistance(3)
    metric.update(samples(mu1, a1), real=True)
    metric.update(samples(mu2, a2), real=False)
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-9)
    same = FeatureFrechetDistance(3)
    same.update(samples(mu1, a1), real=True)
    same.update(samples(mu1, a1), real=False)
    assert float(same.compute()) == pytest.approx(0.0, abs=1e-9)


def test_lpips_from_a_torchvision_file(alexnet_file):
    """LPIPS of identical images is 0 and of different ones positive; the backbone holds the file's weights and the
    linear heads are torchmetrics' shipped v0.1 heads; the file is not the standard one, and the record says why."""
    from motionlab.metrics.perceptual import LearnedPerceptualSimilarity

    metric = LearnedPerceptualSimilarity("alex", alexnet_file)
    image = _face()[None].expand(2, -1, -1, -1)
    metric.update(image, image.clone())
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-7)
    metric.reset()
    metric.update(image, image.flip(-1))
    assert float(metric.compute()) > 1e-3
    stored = torch.load(alexnet_file, weights_only=True)
    assert torch.equal(metric.network.net.slice1[0].weight, stored["features.0.weight"])
    assert metric.network.lin0.model[-1].weight.abs().sum() > 0  # the shipped heads, not zeros
    record = weights_record("lpips_alex", alexnet_file)
    assert not record["standard"] and "not the published alexnet-owt-7be5be79.pth's" in record["reason"]
    assert comparability(record, {"name": "hdtf_self", "paper": "x"})["comparable_to_papers"] is False


def test_csim_arcface_of_a_face_with_itself_is_one(arcface_file):
    """Five points from dlib's 68 align the face onto ArcFace's template; a face against itself has CSIM 1, against a
    mirrored, shifted copy less; the graph's normalisation follows InsightFace's rule (none inside: (x - 127.5) / 127.5)."""
    from motionlab.metrics.identity import ARCFACE_TEMPLATE, ArcFaceEmbedder, ArcFaceSimilarity, arcface_crop

    metric = ArcFaceSimilarity(arcface_file)
    assert (metric.embedder.mean, metric.embedder.std) == (127.5, 127.5)
    face = _face()
    metric.update(face[None], face[None, None].expand(1, 3, -1, -1, -1))
    assert float(metric.compute()) == pytest.approx(1.0, abs=1e-5) and float(metric.missed) == 0
    other = torch.roll(face.flip(-1), 20, dims=-1)
    metric.reset()
    metric.update(face[None], other[None, None])
    assert float(metric.compute()) < 0.9999
    # the alignment puts the five points on the template: bright squares at the points of a face twice the size land there
    frame = (face.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    points = ARCFACE_TEMPLATE * 2 + 10
    canvas = np.zeros((260, 260, 3), np.uint8)
    for x, y in points.round().astype(int):
        canvas[y - 4 : y + 5, x - 4 : x + 5] = 255
    crop = arcface_crop(canvas, points)
    assert crop.shape == (112, 112, 3)
    assert all(crop[y, x, 0] > 200 for x, y in ARCFACE_TEMPLATE.round().astype(int)) and crop[5, 5, 0] == 0
    embeddings, found = ArcFaceEmbedder(arcface_file)(np.stack([frame, np.zeros_like(frame)]))
    assert found.tolist() == [True, False] and np.linalg.norm(embeddings[0]) == pytest.approx(1.0, abs=1e-5)


def test_lse_syncnet_on_the_standard_architecture(tmp_path):
    """The VGG SyncNet in syncnet_v2.model's layout loads strictly; the offset sweep of a constructed shifted pair finds
    the shift; a clip with its audio gives finite LSE-D / LSE-C; the MFCC windows are 13 x 20 per start frame."""
    from motionlab.data.audio import syncnet_mfcc
    from motionlab.metrics.sync import SyncNetScores, SyncNetV2, offset_distances, syncnet_inputs

    torch.manual_seed(0)
    state = SyncNetV2().state_dict()
    assert {key.split(".")[0] for key in state} == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"} and len(state) == 102
    torch.save(state, tmp_path / "syncnet_v2.model")
    audio = torch.randn(40, 16)
    video = audio.roll(-4, dims=0) + 0.01 * torch.randn(40, 16)  # video frame t matches audio t + 4
    assert 15 - int(offset_distances(video, audio, 15).argmin()) == -4
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.normal(size=16000)).astype(np.float32)
    mfcc = syncnet_mfcc(wav)
    assert mfcc.shape == (13, 1 + int(np.ceil((16000 - 400) / 160)))
    frames = (rng.random((25, 96, 96, 3)) * 255).astype(np.uint8)
    lips, sounds = syncnet_inputs(frames, wav)
    assert lips.shape == (20, 3, 5, 224, 224) and sounds.shape == (20, 1, 13, 20)
    metric = SyncNetScores(tmp_path / "syncnet_v2.model", max_offset=5)
    [scores] = metric.clip_scores(frames, wav)
    metric.update(frames, wav)
    assert np.isfinite(scores["lse_d"]) and scores["lse_c"] >= 0 and abs(scores["offset"]) <= 5
    assert set(metric.compute()) == {"lse_d_syncnet", "lse_c_syncnet", "sync_offset_syncnet"}
    record = weights_record("lse_syncnet", tmp_path / "syncnet_v2.model")
    assert not record["standard"] and "published without a hash" in record["reason"]
    pinned = weights_record("lse_syncnet", tmp_path / "syncnet_v2.model", standard_sha256=record["sha256"])
    assert pinned["standard"] and "pinned" in pinned["reason"]


def test_every_standard_network_names_its_file_and_the_suite_asks_for_it():
    from motionlab.metrics.suite import NETWORK_METRICS, EvaluationSuite
    from motionlab.utils.config import ConfigError

    # s3fd: akd_fan's face detector; sfd_face: lse_syncnet's face tracks
    assert set(NETWORK_METRICS) | {"fid_inception", "s3fd", "sfd_face"} == set(STANDARD_WEIGHTS)
    with pytest.raises(ConfigError, match=r"suite.networks.csim_arcface=<path to w600k_r50.onnx> \(published at InsightFace"):
        EvaluationSuite(names=["csim_arcface"])
    protocol = {"name": "lrs2_lse", "paper": "Wav2Lip"}
    standard = {"standard": True, "reason": "pinned"}
    assert comparability(standard, protocol)["comparable_to_papers"] is True
    assert "no paper's protocol" in comparability(standard, None)["reason"]
    assert "not a paper's metric" in comparability(None, protocol)["reason"]


class _I3DStandIn(torch.nn.Module):
    """A scripted module with StyleGAN-V's I3D interface: (B, 3, T, H, W) -> (B, 400) with its three flags."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1
        if resize:
            x = torch.nn.functional.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        logits = self.head(x.mean(dim=(2, 3, 4)))
        return logits if return_features else torch.softmax(logits, dim=1)


def test_fvd_from_an_i3d_torchscript_file(tmp_path):
    """FVD of a clip set against itself is 0 and against another set positive; clips shorter than 16 frames are
    refused; a file that is not TorchScript is named."""
    from motionlab.metrics.video_distance import FrechetVideoDistance
    from motionlab.utils.errors import InputError

    torch.manual_seed(0)
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_I3DStandIn()).save(str(path))
    metric = FrechetVideoDistance(path, batch_size=2)
    clips = torch.rand(4, 16, 3, 32, 32)
    metric.update(clips, real=True)
    metric.update(clips, real=False)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    metric.update(clips, real=True)
    metric.update(clips * 0.5, real=False)
    assert float(metric.compute()) > 1e-3
    with pytest.raises(ValueError, match="at least 16 frames"):
        metric.update(clips[:, :8], real=True)
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(InputError, match="is not a TorchScript file"):
        FrechetVideoDistance(tmp_path / "bad.pt")
    assert not weights_record("fvd_i3d", path)["standard"]
