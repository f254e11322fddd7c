"""precision=int8's mechanism: named sub-modules replaced by onnxruntime int8 graphs calibrated on what they receive."""

import numpy as np
import pytest
import torch

from motionlab.models import create_model
from motionlab.models.int8 import OnnxModule, quantize_modules


def _small(name: str):
    torch.manual_seed(0)
    if name == "fomm_vox256":
        return create_model(name, input_size=64, num_kp=4, kp_detector={"block_expansion": 8, "max_features": 32, "num_blocks": 3},
                            generator={"block_expansion": 8, "max_features": 32, "num_bottleneck_blocks": 1,
                                       "dense_motion_params": {"block_expansion": 8, "max_features": 32, "num_blocks": 3}}).eval()
    return create_model(name, input_size=64, num_tps=2, generator={"block_expansion": 8, "max_features": 32, "num_down_blocks": 2},
                        dense_motion={"block_expansion": 8, "max_features": 32, "num_blocks": 3}).eval()


def _frames(count: int, size: int = 64) -> torch.Tensor:
    """Smooth, image-like inputs (a real photo's crops): random noise would calibrate ranges no image reaches."""
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    crops = [photo[:, 40 + 12 * i : 40 + 12 * i + 256, 120 + 8 * i : 120 + 8 * i + 256] for i in range(count)]
    return torch.nn.functional.interpolate(torch.stack(crops), size=(size, size), mode="area")


@pytest.mark.parametrize("name", ["fomm_vox256", "tpsmm_vox256"])
def test_int8_modules_follow_fp32_and_leave_the_rest(name):
    """Each architecture's int8 modules (a list-returning encoder among TPSMM's) run as OnnxModules after calibration
    on the run's frames; the animated frames stay within int8's rounding of fp32's (> 35 dB on these frames), and only
    the listed modules were replaced."""
    model = _small(name)
    source, driving = _frames(1), _frames(4)
    names = model.model_info.int8_modules(model)

    def animated() -> torch.Tensor:
        kp_source, kp_driving = model.kp_detector(source), model.kp_detector(driving)
        return model.animate(source.expand(4, -1, -1, -1), kp_driving=kp_driving, kp_source=kp_source.expand(4))["prediction"]

    with torch.no_grad():
        reference = animated()
    before = set(model.state_dict())
    seen = quantize_modules(model, names, animated, f"{name}.int8")
    assert seen == {module: 1 for module in names}
    assert all(isinstance(model.get_submodule(module), OnnxModule) for module in names)
    with torch.no_grad():
        quantized = animated()
    assert quantized.shape == reference.shape and quantized.dtype == torch.float32
    psnr = 10 * np.log10(1 / float(((quantized - reference) ** 2).mean()))
    assert 35 < psnr < 200, psnr
    # the replaced modules' weights are gone from the state dict (it cannot be saved as the fp32 network), the rest kept
    removed = before - set(model.state_dict())
    assert removed and all(any(key.startswith(module + ".") for module in names) for key in removed)


def test_modules_the_calibration_never_reaches_or_that_take_non_tensors_are_refused():
    model = _small("fomm_vox256")
    with pytest.raises(ValueError, match=r"never ran \['generator.bottleneck'\]"):
        quantize_modules(model, ("generator.bottleneck",), lambda: model.kp_detector(_frames(1)), "x")
    with pytest.raises(TypeError, match="generator.dense_motion_network takes .*Keypoints.*only tensor-only sub-modules"):
        quantize_modules(model, ("generator.dense_motion_network",), lambda: model(_frames(1), _frames(1)), "x")
