"""``motionlab-export {fomm,onnx} ckpt=... out=...``: write a trained model in another format (see conf/export.yaml)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from motionlab.cli.subcommands import dispatch
from motionlab.models import load_model
from motionlab.models.fomm import save_fomm_checkpoint
from motionlab.utils.config import resolved_container


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def _fomm(cfg: DictConfig) -> None:
    options = resolved_container(cfg)
    net = load_model(options["ckpt"], name=options["model"])
    if net.model_info.family != "keypoint_animator":
        raise ValueError(f"{options['ckpt']} holds a {net.model_info.name}; only keypoint (FOMM) models export to the FOMM format")
    path = save_fomm_checkpoint(net, options["out"])
    print(f"wrote FOMM checkpoint {path} (kp_detector: {len(net.kp_detector.state_dict())} tensors, generator: {len(net.generator.state_dict())})")


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def _onnx(cfg: DictConfig) -> None:
    from motionlab.inference.export import export_lipsync_onnx

    options = {key: value for key, value in resolved_container(cfg).items() if key != "hydra"}
    report = export_lipsync_onnx(**options)
    shapes = ", ".join(f"{name} {shape}" for name, shape in report["inputs"].items())
    print(f"wrote {report['out']} (inputs: {shapes}; batch axis dynamic); onnxruntime parity, max abs difference: {report['parity']}")
    if report["reference_outputs"]:
        print(f"reference inputs and outputs in {report['reference_outputs']}")


def _flag_to_override(argv: list[str]) -> list[str]:
    """``--reference-outputs DIR`` (the documented flag) as the Hydra override ``reference_outputs=DIR``."""
    out, args = [], iter(argv)
    for arg in args:
        if arg == "--reference-outputs":
            out.append(f"reference_outputs={next(args, '')}")
        elif arg.startswith("--reference-outputs="):
            out.append("reference_outputs=" + arg.split("=", 1)[1])
        else:
            out.append(arg)
    return out


def main() -> None:
    sys.argv = _flag_to_override(sys.argv)
    dispatch("motionlab-export", {"fomm": _fomm, "onnx": _onnx}, "ckpt=PATH out=PATH")


if __name__ == "__main__":
    main()
