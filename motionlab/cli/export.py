"""``motionlab-export {fomm,onnx} ckpt=... out=...``: write a trained model in another format (see conf/export.yaml)."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import dispatch
from motionlab.models import load_model
from motionlab.models.fomm import save_fomm_checkpoint
from motionlab.utils.config import resolved_container


def _fomm(cfg: DictConfig) -> None:
    options = resolved_container(cfg)
    net = load_model(options["ckpt"], name=options["model"])
    if net.model_info.family != "keypoint_animator":
        raise ValueError(f"{options['ckpt']} holds a {net.model_info.name}; only keypoint (FOMM) models export to the FOMM format")
    path = save_fomm_checkpoint(net, options["out"])
    print(f"wrote FOMM checkpoint {path} (kp_detector: {len(net.kp_detector.state_dict())} tensors, generator: {len(net.generator.state_dict())})")


def _onnx(cfg: DictConfig) -> None:
    from motionlab.inference.export import export_lipsync_onnx

    options = {key: value for key, value in resolved_container(cfg).items() if key != "hydra"}
    report = export_lipsync_onnx(**options)
    shapes = ", ".join(f"{name} {shape}" for name, shape in report["inputs"].items())
    print(f"wrote {report['out']} (inputs: {shapes}; batch axis dynamic); onnxruntime parity, max abs difference: {report['parity']}")
    if report["reference_outputs"]:
        print(f"reference inputs and outputs in {report['reference_outputs']}")


def main() -> None:
    dispatch("motionlab-export", {"fomm": ("export", _fomm), "onnx": ("export", _onnx)})

if __name__ == "__main__":
    main()
