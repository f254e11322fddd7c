"""Every metric against a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from motionlab.geometry import Keypoints
from motionlab.metrics.colour import ColourDrift, delta_e2000, mean_lab
from motionlab.metrics.descriptor import AverageKeypointDistance, fit_keypoint_regressor, keypoint_regression_error
from motionlab.metrics.features import ImageFeatures
from motionlab.metrics.frechet import ClipFrechetDistance, FeatureFrechetDistance, FrechetDistance
from motionlab.metrics.identity import IdentityDistance
from motionlab.metrics.reconstruction import ResidualMagnitude, reconstruction_metrics
from motionlab.metrics.sync import SyncScores
from motionlab.metrics.temporal import Flicker, MotionSmoothness, TemporalDifferenceConsistency


def _numpy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_matches_numpy_scipy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    y = rng.normal(loc=0.3, scale=1.2, size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5
    stats = FeatureFrechetDistance(16)
    for chunk in np.array_split(x, 3):
        stats.update(torch.from_numpy(chunk), real=True)
    for chunk in np.array_split(y, 4):
        stats.update(torch.from_numpy(chunk), real=False)
    assert float(stats.compute()) == pytest.approx(_numpy_frechet(x, y), rel=1e-6)


@pytest.fixture(scope="module")
def effnet():
    return ImageFeatures()


def test_fd_effnetlite0_zero_for_identical_sets_and_positive_otherwise(effnet):
    torch.manual_seed(0)
    images = torch.rand(6, 3, 48, 48)
    metric = FrechetDistance(effnet)
    assert metric.name == "fd_effnetlite0"
    metric.update(images, real=True)
    metric.update(images, real=False)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-3)
    metric.reset()
    metric.update(images, real=True)
    metric.update(images.flip(-1).roll(8, -2) * 0.5, real=False)
    assert float(metric.compute()) > 1.0


def test_clip_frechet_distance(effnet):
    torch.manual_seed(0)
    clips = torch.rand(4, 3, 3, 32, 32)
    metric = ClipFrechetDistance(effnet)
    assert metric.name == "fvd_effnetlite0"
    metric.update(clips, real=True)
    metric.update(clips, real=False)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="T>=2"):
        metric.update(clips[:, :1], real=True)


def test_inception_needs_a_weights_file():
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        ImageFeatures("inception_v3")


def _random_inception_weights(path, monkeypatch) -> None:
    """Write a randomly initialised FID-Inception state dict: the real architecture, no download."""
    import torch_fidelity.feature_extractor_inceptionv3 as module

    with monkeypatch.context() as patch:
        patch.setattr(module, "load_state_dict_from_url", lambda *args, **kwargs: None)
        patch.setattr(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        network = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(network.state_dict(), path)


def test_fid_inception_equals_torchmetrics(tmp_path, monkeypatch):
    """With the same Inception weights file, our FID equals torchmetrics' FrechetInceptionDistance."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    weights = tmp_path / "inception.pth"
    _random_inception_weights(weights, monkeypatch)
    ours = FrechetDistance(ImageFeatures("inception_v3", weights_path=weights))
    assert ours.name == "fid_inception"
    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights), normalize=True)
    torch.manual_seed(1)
    real, fake = torch.rand(6, 3, 64, 64), torch.rand(6, 3, 64, 64) * 0.7
    for metric in (ours, reference):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    assert float(ours.compute()) == pytest.approx(float(reference.compute()), rel=1e-5)


def test_kid_inception_equals_torchmetrics(tmp_path, monkeypatch):
    """KID on the FID Inception equals torchmetrics' KernelInceptionDistance on the same features (one subset of all
    images, so no sampling differs)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    from motionlab.metrics.frechet import KernelDistance

    weights = tmp_path / "inception.pth"
    _random_inception_weights(weights, monkeypatch)
    features = ImageFeatures("inception_v3", weights_path=weights)
    ours = KernelDistance(features, subsets=1)
    assert ours.name == "kid_inception"
    # torchmetrics' KID builds its Inception only from a download: it is given the same extractor
    reference = KernelInceptionDistance(feature=features, normalize=True, subsets=1, subset_size=6)
    torch.manual_seed(1)
    real, fake = torch.rand(6, 3, 64, 64), torch.rand(6, 3, 64, 64) * 0.7
    for metric in (ours, reference):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    assert float(ours.compute()) == pytest.approx(float(reference.compute()[0]), rel=1e-4)


def test_inception_weights_with_code_are_refused(tmp_path):
    weights = tmp_path / "evil.pth"
    torch.save({"payload": ImageFeatures}, weights)  # a pickled class: not weights
    with pytest.raises(ValueError, match="weights-only"):
        ImageFeatures("inception_v3", weights_path=weights)


def test_temporal_difference_consistency_known_answers():
    torch.manual_seed(0)
    driver = torch.rand(2, 8, 3, 16, 16).cumsum(1) / 8
    metric = TemporalDifferenceConsistency()
    metric.update(driver, driver)
    assert float(metric.compute()) == 0.0
    errors = []
    for shift in (1, 2, 3):
        metric.reset()
        lagged = torch.cat([driver[:, :1].expand(-1, shift, -1, -1, -1), driver[:, :-shift]], dim=1)
        metric.update(lagged, driver)
        errors.append(float(metric.compute()))
    assert 0 < errors[0] < errors[1] < errors[2]


def test_flicker_known_answers():
    static = torch.full((1, 4, 3, 16, 16), 0.5)
    metric = Flicker()
    metric.update(static, static)
    assert float(metric.compute()) == 0.0
    noisy = static.clone()
    noisy[:, 1::2, :, ::2, ::2] += 0.1  # a checkerboard toggling every other frame: pure high frequency
    metric.reset()
    metric.update(noisy, static)
    assert float(metric.compute()) > 1e-4
    moving_driver = static + torch.arange(4).view(1, 4, 1, 1, 1) * 0.1  # nothing is static: nothing is counted
    metric.reset()
    metric.update(noisy, moving_driver)
    assert float(metric.compute()) == 0.0


def test_motion_smoothness_known_answers():
    t = torch.arange(6, dtype=torch.float64).view(1, 6, 1, 1)
    linear = torch.cat([t * 2, t * 3], dim=-1).expand(1, 6, 4, 2)
    metric = MotionSmoothness()
    metric.update(linear)
    assert float(metric.compute()) == pytest.approx(0.0)
    jitter = linear.clone()
    jitter[:, 2, :, 0] += 1.0  # one frame off by one pixel: second differences 1, 2, 1 at t=1..3
    metric.reset()
    metric.update(jitter)
    assert float(metric.compute()) == pytest.approx((1 + 2 + 1) / 4)


def test_akd_is_the_displacement_length_in_pixels_of_detector_output():
    driver = torch.rand(5, 10, 2) * 2 - 1  # normalised, as a detector returns them, on 65 x 65 images
    akd = AverageKeypointDistance()
    shift = torch.tensor([3.0, 4.0]) / 32  # 3 and 4 pixels
    akd.update(Keypoints(driver + shift, size=(65, 65)), Keypoints(driver, size=(65, 65)))
    assert float(akd.compute()) == pytest.approx(5.0)
    akd.reset()
    akd.update(Keypoints(driver, size=(65, 65)), Keypoints(driver, size=(65, 65)).to_pixels())  # conventions mix
    assert float(akd.compute()) == pytest.approx(0.0, abs=1e-5)


def test_identity_distance_l2_and_squared():
    a, b = torch.zeros(4, 3), torch.tensor([[3.0, 4.0, 0.0]]).expand(4, 3)
    l2, squared = IdentityDistance(), IdentityDistance(squared=True)
    l2.update(a, b)
    squared.update(a, b)
    assert float(l2.compute()) == pytest.approx(5.0) and float(squared.compute()) == pytest.approx(25.0)


def test_keypoint_regression_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    learned = rng.uniform(0, 64, size=(200, 5, 2))
    mixing = rng.normal(size=(11, 6))
    truth = (np.concatenate([learned.reshape(200, -1), np.ones((200, 1))], 1) @ mixing).reshape(200, 3, 2)
    weights = fit_keypoint_regressor(learned[:150], truth[:150])
    assert keypoint_regression_error(weights, learned[150:], truth[150:], image_size=64) < 1e-6
    noisy = truth + rng.normal(scale=0.64, size=truth.shape)  # ~1% of the image per coordinate
    weights = fit_keypoint_regressor(learned[:150], noisy[:150])
    assert 0.5 < keypoint_regression_error(weights, learned[150:], noisy[150:], image_size=64) < 2.5


def test_colour_drift_known_shift():
    import kornia.color as KC

    torch.manual_seed(0)
    portrait = torch.rand(2, 3, 16, 16) * 0.5 + 0.25
    lab = KC.rgb_to_lab(portrait)
    frames = []
    for t in range(4):
        shifted = lab.clone()
        shifted[:, 0] += 2.0 * t  # lightness +2 per frame: ΔE76 = 2t, slope 2
        frames.append(KC.lab_to_rgb(shifted))
    generated = torch.stack(frames, dim=1)
    metric = ColourDrift()
    metric.update(portrait, generated)
    values = metric.compute()
    assert float(values["delta_e76"]) == pytest.approx(np.mean([0, 2, 4, 6]), abs=0.02)
    assert float(values["delta_e76_slope"]) == pytest.approx(2.0, abs=0.01)
    metric.reset()
    metric.update(portrait, portrait[:, None].expand(-1, 3, -1, -1, -1))
    assert float(metric.compute()["delta_e2000"]) == pytest.approx(0.0, abs=1e-4)


def test_ciede2000_matches_scikit_image():
    from skimage.color import deltaE_ciede2000

    rng = np.random.default_rng(1)
    lab1 = np.stack([rng.uniform(0, 100, 500), rng.uniform(-80, 80, 500), rng.uniform(-80, 80, 500)], -1)
    lab2 = lab1 + rng.normal(scale=8, size=lab1.shape)
    ours = delta_e2000(torch.from_numpy(lab1), torch.from_numpy(lab2)).numpy()
    assert np.allclose(ours, deltaE_ciede2000(lab1, lab2), atol=1e-6)


def test_mean_lab_uses_the_mask():
    image = torch.zeros(1, 3, 4, 4)
    image[..., :2] = 1.0
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1.0
    assert float(mean_lab(image, mask)[0, 0]) == pytest.approx(100.0, abs=1e-3)


def test_reconstruction_metrics_ideal_values():
    torch.manual_seed(0)
    target = torch.rand(3, 3, 32, 32)
    metrics = reconstruction_metrics()
    metrics.update(target, target)
    values = metrics.compute()
    assert float(values["l1"]) == 0.0 and float(values["ssim"]) == pytest.approx(1.0)
    assert torch.isinf(values["psnr"]) or float(values["psnr"]) > 100
    residual = ResidualMagnitude()
    residual.update(target + 0.1, target)
    assert float(residual.compute()) == pytest.approx(0.1)


def test_sync_scores_find_a_known_offset():
    torch.manual_seed(0)
    audio = torch.randn(60, 8)
    video = audio.roll(-3, dims=0) + 0.01 * torch.randn(60, 8)  # video frame t matches audio t + 3
    metric = SyncScores(max_offset=5)
    metric.update(video, audio)
    values = metric.compute()
    assert float(values["sync_offset_ours"]) == 3.0
    assert float(values["lse_d_ours"]) < 0.2 < float(values["lse_c_ours"])


def test_suite_metrics_are_named_by_what_they_are_computed_with():
    """A feature metric's name states its network; asking for one the suite's features are not is an error."""
    from motionlab.metrics.suite import EvaluationSuite
    from motionlab.utils.config import ConfigError

    suite = EvaluationSuite(names=["fd_effnetlite0", "colour"])
    assert suite.frechet is not None and suite.frechet.name == "fd_effnetlite0" and suite.identity is None and suite.clip_frechet is None
    with pytest.raises(ConfigError, match=r"metric 'fid_inception' is computed on inception features, but the suite's are effnetlite0"):
        EvaluationSuite(names=["fid_inception"])
    with pytest.raises(ConfigError, match=r"unknown metric 'fd'"):
        EvaluationSuite(names=["fd"])
