"""``motionlab-export {fomm,onnx,lora,merge} ckpt=... out=...``: write a trained model in another format (see conf/export.yaml)."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import dispatch
from motionlab.utils.config import resolved_container
from motionlab.utils.errors import InputError


def _fomm(cfg: DictConfig) -> None:
    from motionlab.models import load_model
    from motionlab.models.fomm import save_fomm_checkpoint

    options = resolved_container(cfg)
    net = load_model(options["ckpt"], name=options["arch"])
    if net.model_info.family != "keypoint_animator":
        raise InputError(f"{options['ckpt']} holds a {net.model_info.name}; only keypoint (FOMM) models export to the FOMM format")
    path = save_fomm_checkpoint(net, options["out"])
    print(f"wrote FOMM checkpoint {path} (kp_detector: {len(net.kp_detector.state_dict())} tensors, generator: {len(net.generator.state_dict())})")


def _onnx(cfg: DictConfig) -> None:
    from motionlab.inference.export import export_predictor_onnx
    from motionlab.utils.progress import progress, progress_wanted

    options = {key: value for key, value in resolved_container(cfg).items() if key not in ("hydra", "base")}
    with progress("exporting", "graphs", progress_wanted(options.pop("progress"))) as on_graph:
        report = export_predictor_onnx(**options, on_graph=on_graph)
    if "graphs" in report:
        for graph in report["graphs"].values():
            print(f"wrote {graph['out']} (opset {graph['opset']}); onnxruntime parity, max abs difference: {graph['max_abs_difference']:.3g}")
        return
    shapes = ", ".join(f"{name} {shape}" for name, shape in report["inputs"].items())
    print(f"wrote {report['out']} (inputs: {shapes}; batch axis dynamic); onnxruntime parity, max abs difference: {report['parity']}")
    if report["reference_outputs"]:
        print(f"reference inputs and outputs in {report['reference_outputs']}")


def _lora(cfg: DictConfig) -> None:
    from motionlab.inference.export import export_lora_adapter

    options = resolved_container(cfg)
    report = export_lora_adapter(options["ckpt"], options["out"], options["base"])
    print(f"wrote {report['out']} ({report['tensors']} tensors, {report['bytes']} bytes; base sha256 {report['base_sha256']})")


def _merge(cfg: DictConfig) -> None:
    from motionlab.inference.export import merge_lora_checkpoint

    options = resolved_container(cfg)
    report = merge_lora_checkpoint(options["ckpt"], options["out"], options["base"])
    print(f"wrote {report['out']} ({report['bytes']} bytes): the adapters merged into base sha256 {report['base_sha256']}")


def main() -> None:
    dispatch("motionlab-export", {"fomm": ("export", _fomm), "onnx": ("export", _onnx), "lora": ("export", _lora), "merge": ("export", _merge)})

if __name__ == "__main__":
    main()
