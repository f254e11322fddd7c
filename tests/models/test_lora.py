"""LoRA through peft: merging (spectral norm included), adapter files and their base check, training with a frozen
base, resume, export / merge commands, inference with lora_ckpt=."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_train, run_cli, tiny_overrides
from torch import nn

from motionlab.inference.export import export_lora_adapter, export_predictor_onnx, merge_lora_checkpoint
from motionlab.models import CheckpointFormatError, create_model, load_model
from motionlab.models.lora import (
    LoraSpec,
    adapter_state_dict,
    add_lora,
    load_adapter,
    merge_lora,
    read_adapter,
    save_adapter,
    set_lora_enabled,
)
from motionlab.models.registry import ModelInfo
from motionlab.tasks import load_predictor
from motionlab.train import train
from motionlab.utils.checkpoint import load_checkpoint, submodule_state_dict
from motionlab.utils.io import file_digest


class NormedNet(nn.Module):
    """Every weight layout a merge has to respect: a plain conv, a BatchNorm trained in full, a depthwise conv,
    legacy spectral norm, parametrised spectral norm, a Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.legacy = nn.utils.spectral_norm(nn.Conv2d(8, 4, 3, padding=1))
        self.parametrized = nn.utils.parametrizations.spectral_norm(nn.Conv2d(4, 4, 1))
        self.head = nn.Linear(4, 2)
        self.model_info = ModelInfo(name="normed_net", family="test")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.parametrized(self.legacy(self.depthwise(self.norm(self.conv(x)))))
        return self.head(x.mean(dim=(2, 3)))


def _trained_adapters(net: nn.Module, seed: int = 0) -> None:
    """Give the adapters non-zero values (fresh ones are the identity, which would make any merge look right)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)


def _normed_net() -> NormedNet:
    torch.manual_seed(0)
    net = NormedNet()
    for _ in range(3):  # power iterations and BatchNorm statistics away from their initial values
        net(torch.randn(4, 3, 8, 8))
    return net.eval()


def test_merged_equals_unmerged_with_spectral_norm_folded():
    net = add_lora(_normed_net(), LoraSpec(rank=4, target_modules="conv|legacy|parametrized|head", modules_to_save=("norm",)))
    _trained_adapters(net)
    x = torch.randn(2, 3, 8, 8)
    unmerged = net(x)
    set_lora_enabled(net, False)
    assert (net(x) - unmerged).abs().max() > 1e-2  # the adapters do change the output
    set_lora_enabled(net, True)
    merged = merge_lora(net)
    assert (merged(x) - unmerged).abs().max() < 1e-5
    assert not any(merged.legacy._forward_pre_hooks.values())  # spectral norm folded into a plain weight
    assert "legacy.weight" in merged.state_dict() and "parametrized.weight" in merged.state_dict()
    assert not any("lora" in key or "modules_to_save" in key for key in merged.state_dict())


def test_peft_alone_loses_the_merge_under_spectral_norm():
    # the fact merge_lora designs around: peft adds the update to .data, the spectral-norm hook recomputes the weight
    net = add_lora(_normed_net(), LoraSpec(rank=4, target_modules="legacy"))
    _trained_adapters(net)
    x = torch.randn(2, 3, 8, 8)
    unmerged = net(x)
    net.legacy.merge()
    assert (net(x) - unmerged).abs().max() > 1e-3


def test_targets_are_checked():
    with pytest.raises(ValueError, match="grouped / depthwise convolutions depthwise"):
        add_lora(_normed_net(), LoraSpec(target_modules="conv|depthwise"))
    with pytest.raises(ValueError, match="matches no module"):
        add_lora(_normed_net(), LoraSpec(target_modules="nothing_here"))
    with pytest.raises(ValueError, match="cannot adapt: norm"):
        add_lora(_normed_net(), LoraSpec(target_modules="conv|norm"))
    with pytest.raises(ValueError, match="no module named 'missing'"):
        add_lora(_normed_net(), LoraSpec(target_modules="conv", modules_to_save=("missing",)))
    with pytest.raises(ValueError, match="unknown keys"):
        LoraSpec.from_dict({"rank": 4, "rnak": 2})
    with pytest.raises(ValueError, match="lora.rank"):
        LoraSpec(rank=0)


def test_adapter_file_round_trip_and_base_check(tmp_path):
    net = add_lora(create_model("animator_v1", motion_channels=[8, 16], appearance_channels=[8, 16], num_res_blocks=1), LoraSpec(rank=4))
    _trained_adapters(net)
    path = save_adapter(net, tmp_path / "a.safetensors", base_sha256="a" * 64, base_name="base.ckpt")
    tensors, meta = read_adapter(path)
    assert meta["lora"]["rank"] == 4 and meta["model"]["name"] == "animator_v1" and meta["base_sha256"] == "a" * 64
    fresh = create_model("animator_v1", motion_channels=[8, 16], appearance_channels=[8, 16], num_res_blocks=1)
    with pytest.raises(CheckpointFormatError, match=f"base sha256 {'a' * 64} \\(base.ckpt\\).*has sha256 {'b' * 64}"):
        load_adapter(fresh, path, "b" * 64, "other.ckpt")
    load_adapter(fresh, path, "a" * 64, "base.ckpt")
    for key, value in adapter_state_dict(net).items():
        assert torch.equal(adapter_state_dict(fresh)[key], value)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointFormatError, match="not a readable safetensors"):
        read_adapter(tmp_path / "bad.safetensors")


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory, animator_base_checkpoint):
    """LoRA runs on a tiny base Animator: two epochs straight, one epoch, and that one resumed to two."""
    root = tmp_path_factory.mktemp("lora")
    common = ["experiment=quickstart", "logger=none", "trainer.deterministic=true", *tiny_overrides(root)]
    base = animator_base_checkpoint
    lora = [*common, "lora=default", "lora.rank=4", "lora.dropout=0.1", f"init_ckpt={base}"]
    metrics, objects = train(compose_train([*lora, "trainer.max_epochs=2"], root / "straight"))
    train(compose_train([*lora, "trainer.max_epochs=1"], root / "first"))
    train(compose_train([*lora, "trainer.max_epochs=2", f"resume={root / 'first/checkpoints/last.ckpt'}"], root / "resumed"))
    return {"root": root, "base": base, "common": common, "lora": lora, "metrics": metrics, "task": objects["model"],
            "straight": root / "straight/checkpoints/last.ckpt", "first": root / "first/checkpoints/last.ckpt",
            "resumed": root / "resumed/checkpoints/last.ckpt"}


def test_lora_training_keeps_the_base_and_saves_adapters_only(lora_runs):
    base_state = submodule_state_dict(load_checkpoint(lora_runs["base"])["state_dict"], "net")
    net_state = lora_runs["task"].net.state_dict()
    for key, value in base_state.items():  # peft moves a target's weights under base_layer
        stored = net_state.get(key, net_state.get(key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")))
        assert torch.equal(stored, value), key  # bit-identical: weights and BatchNorm statistics
    checkpoint = load_checkpoint(lora_runs["straight"])
    assert checkpoint["state_dict"] and all(".lora_" in key for key in checkpoint["state_dict"])
    lora = checkpoint["motionlab"]["lora"]
    assert lora["base_sha256"] == file_digest(lora_runs["base"]) and lora["spec"]["rank"] == 4
    metrics = lora_runs["metrics"]  # trained: exactly the adapters; frozen: exactly the base
    assert metrics["model/params_trainable"] == sum(v.numel() for v in checkpoint["state_dict"].values())
    assert metrics["model/params_frozen"] == sum(v.numel() for k, v in base_state.items() if "running" not in k and "num_batches" not in k)
    assert not any(torch.equal(v, torch.zeros_like(v)) for k, v in checkpoint["state_dict"].items() if "lora_B" in k)  # trained


def test_lora_resume_matches_an_uninterrupted_run(lora_runs):
    straight, resumed = (load_checkpoint(lora_runs[name])["state_dict"] for name in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    first = load_checkpoint(lora_runs["first"])["state_dict"]
    assert any(not torch.equal(first[k], straight[k]) for k in straight)


def test_lora_resume_onto_another_base_is_refused(lora_runs, tmp_path):
    root = lora_runs["root"]
    train(compose_train([*lora_runs["common"], "trainer.max_epochs=1", "seed=7"], root / "other_base"))
    other = root / "other_base" / "checkpoints" / "last.ckpt"
    overrides = [*lora_runs["common"], "lora=default", "lora.rank=4", f"init_ckpt={other}", "trainer.max_epochs=2", f"resume={lora_runs['first']}"]
    with pytest.raises(CheckpointFormatError, match=f"{file_digest(lora_runs['base'])}.*{file_digest(other)}"):
        train(compose_train(overrides, tmp_path / "run"))


def test_export_merge_and_inference_with_lora(lora_runs, tmp_path):
    base, run = lora_runs["base"], lora_runs["straight"]
    report = export_lora_adapter(run, tmp_path / "target.safetensors")
    assert report["base_sha256"] == file_digest(base)
    merged_from_run = merge_lora_checkpoint(run, tmp_path / "merged.ckpt")
    merge_lora_checkpoint(tmp_path / "target.safetensors", tmp_path / "merged_from_file.ckpt", base=base)
    assert merged_from_run["base_sha256"] == file_digest(base)

    portrait, driver = torch.rand(1, 3, 32, 32), torch.rand(3, 3, 32, 32)
    outputs = {}
    with torch.no_grad():
        unmerged = load_predictor(base, lora=tmp_path / "target.safetensors")
        outputs["adapter file"] = unmerged(portrait, driver, driver[:1])["generated"]
        outputs["run checkpoint"] = load_predictor(run)(portrait, driver, driver[:1])["generated"]
        outputs["merged"] = load_predictor(tmp_path / "merged.ckpt")(portrait, driver, driver[:1])["generated"]
        outputs["merged from file"] = load_predictor(tmp_path / "merged_from_file.ckpt")(portrait, driver, driver[:1])["generated"]
        set_lora_enabled(unmerged.net, False)
        base_output = unmerged(portrait, driver, driver[:1])["generated"]
        reference = load_predictor(base)(portrait, driver, driver[:1])["generated"]
    for name, value in outputs.items():
        assert (value - outputs["adapter file"]).abs().max() < 1e-5, name
    assert torch.equal(base_output, reference)  # switched off: exactly the base
    assert (outputs["merged"] - reference).abs().max() > 1e-4  # and the adapters do something
    assert load_model(tmp_path / "merged.ckpt").state_dict().keys() == load_model(base).state_dict().keys()

    other = lora_runs["root"] / "other_base" / "checkpoints" / "last.ckpt"
    if other.is_file():  # written by the refusal test when it ran first
        with pytest.raises(CheckpointFormatError, match="trained on base sha256"):
            load_predictor(other, lora=tmp_path / "target.safetensors")
    with pytest.raises(CheckpointFormatError, match="trained on base sha256"):
        merge_lora_checkpoint(tmp_path / "target.safetensors", tmp_path / "x.ckpt", base=tmp_path / "merged.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


def test_export_commands(lora_runs, tmp_path):
    exported = run_cli("motionlab-export", "lora", f"ckpt={lora_runs['straight']}", "out=target.safetensors", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    merged = run_cli("motionlab-export", "merge", "ckpt=target.safetensors", f"base={lora_runs['base']}", "out=merged.ckpt", cwd=tmp_path)
    assert merged.returncode == 0 and "merged into base sha256" in merged.stdout, merged.stderr
    assert (tmp_path / "target.safetensors").stat().st_size < 0.1 * lora_runs["base"].stat().st_size


def test_rank8_adapter_files_are_small_next_to_their_base(tmp_path, lipsync_checkpoints):
    # a full-size Animator v1 checkpoint (one step on tiny data) and the lip-sync fixture's full-size U-Net checkpoint
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("model.net")]
    train(compose_train(["experiment=quickstart", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                         "trainer.limit_val_batches=1", *overrides], tmp_path / "animator"))
    for base in (tmp_path / "animator" / "checkpoints" / "last.ckpt", lipsync_checkpoints["unet"]):
        net = add_lora(load_model(base), LoraSpec(rank=8))
        adapter = save_adapter(net, tmp_path / f"{net.model_info.name}.safetensors", file_digest(base), base.name)
        assert adapter.stat().st_size <= 0.02 * base.stat().st_size, (net.model_info.name, adapter.stat().st_size, base.stat().st_size)
    # the U-Net's adapters (1x1 convolutions between batch norms) merge exactly, and the merged file exports to ONNX
    _trained_adapters(net)
    inputs = net.model_info.example_inputs(1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        unmerged = net(*inputs.values())
    trained = save_adapter(net, tmp_path / "speaker.safetensors", file_digest(base), base.name)
    merge_lora_checkpoint(trained, tmp_path / "merged.ckpt", base=base)
    merged = load_model(tmp_path / "merged.ckpt")
    with torch.no_grad():
        assert (merged(*inputs.values()) - unmerged).abs().max() < 1e-5
    report = export_predictor_onnx(str(tmp_path / "merged.ckpt"), str(tmp_path / "merged.onnx"))
    assert max(report["parity"].values()) <= 1e-4
