"""precision=bf16's float32 parts: named sub-modules compute in float32 inside a bfloat16 autocast region."""

import copy

import pytest
import torch
from torch import nn

from motionlab.geometry import Keypoints
from motionlab.models import create_model
from motionlab.models.bf16 import as_float32, keep_float32


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def test_kept_modules_compute_in_float32_under_autocast_and_change_nothing_outside():
    model, x = _Pair(), torch.randn(4, 8)
    plain = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.first(x).dtype == torch.bfloat16
    keep_float32(model, ("first",))
    keep_float32(model, ("first",))  # once per module: a second call wraps nothing again
    assert torch.equal(model(x), plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = model.first(x.bfloat16())  # a bf16 input is cast up, the product computed in float32
        assert kept.dtype == torch.float32 and model.second(kept).dtype == torch.bfloat16
    torch.testing.assert_close(kept, model.first(x.bfloat16().float()))
    copied = copy.deepcopy(model)  # the copy's kept module runs its own weights, in float32
    with torch.no_grad():
        copied.first.weight.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert copied.first(x).dtype == torch.float32 and not torch.equal(copied.first(x), model.first(x))


def test_as_float32_reaches_into_keypoints_lists_and_dicts():
    keypoints = Keypoints(torch.zeros(1, 3, 2, dtype=torch.bfloat16), size=(8, 8), jacobian=torch.zeros(1, 3, 2, 2, dtype=torch.bfloat16))
    cast = as_float32({"kp": keypoints, "frames": [torch.ones(2, dtype=torch.bfloat16)], "index": torch.arange(3), "name": "x"})
    assert cast["kp"].value.dtype == cast["kp"].jacobian.dtype == cast["frames"][0].dtype == torch.float32
    assert cast["kp"].size == (8, 8) and cast["index"].dtype == torch.int64 and cast["name"] == "x"


@pytest.mark.parametrize(("name", "decoder"), [("fomm_vox256", "generator"), ("tpsmm_vox256", "inpainting_network"), ("liveportrait", "spade_generator")])
def test_each_architecture_keeps_existing_modules_and_leaves_its_decoder_to_bf16(name, decoder):
    """What bf16 leaves in float32 exists in the network; the decoder, where the time is, runs in bf16."""
    model = create_model(name)
    kept = model.model_info.float32_modules(model)
    assert kept and all(isinstance(model.get_submodule(part), nn.Module) for part in kept)
    assert not any(decoder == part or decoder.startswith(part + ".") for part in kept)
