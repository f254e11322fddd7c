"""``motionlab-export fomm ckpt=... out=...``: write a trained model in another project's format."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from motionlab.cli.subcommands import dispatch
from motionlab.inference.animate import load_network
from motionlab.models.fomm import FOMM
from motionlab.models.fomm_io import save_fomm_checkpoint
from motionlab.utils.config import resolved_container


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def _fomm(cfg: DictConfig) -> None:
    options = resolved_container(cfg)
    net, _ = load_network(options["ckpt"])
    if not isinstance(net, FOMM):
        raise ValueError(f"{options['ckpt']} holds a {type(net).__name__}; only descriptor (FOMM) models export to the FOMM format")
    path = save_fomm_checkpoint(net, options["out"])
    print(f"wrote FOMM checkpoint {path} (kp_detector: {len(net.kp_detector.state_dict())} tensors, generator: {len(net.generator.state_dict())})")


def main() -> None:
    dispatch("motionlab-export", {"fomm": _fomm}, "ckpt=PATH out=PATH")


if __name__ == "__main__":
    main()
