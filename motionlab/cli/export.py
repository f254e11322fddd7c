"""``motionlab-export fomm ckpt=... out=...``: write a trained model in another project's format."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from motionlab.inference.animate import load_network
from motionlab.models.fomm import FOMM
from motionlab.models.fomm_io import save_fomm_checkpoint
from motionlab.utils.config import resolved_container

KINDS = ("fomm",)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def _fomm(cfg: DictConfig) -> None:
    options = resolved_container(cfg)
    net, _ = load_network(options["ckpt"])
    if not isinstance(net, FOMM):
        raise ValueError(f"{options['ckpt']} holds a {type(net).__name__}; only descriptor (FOMM) models export to the FOMM format")
    path = save_fomm_checkpoint(net, options["out"])
    print(f"wrote FOMM checkpoint {path} (kp_detector: {len(net.kp_detector.state_dict())} tensors, generator: {len(net.generator.state_dict())})")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in KINDS:
        print(f"usage: motionlab-export {{{','.join(KINDS)}}} ckpt=PATH out=PATH", file=sys.stderr)
        sys.exit(2)
    sys.argv.pop(1)
    _fomm()


if __name__ == "__main__":
    main()
