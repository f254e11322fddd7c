"""``motionlab-cache descriptors ckpt=... [data=...]``: precompute per-clip descriptors of a checkpoint."""

from __future__ import annotations

import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from motionlab.data.datasets import discover_clips
from motionlab.utils.config import validate_config

KINDS = ("descriptors",)


@hydra.main(version_base="1.3", config_path="../conf", config_name="cache")
def _descriptors(cfg: DictConfig) -> None:
    validate_config(cfg, required=("ckpt", "data", "paths"))
    with open_dict(cfg):
        cfg.data.descriptor_checkpoint = cfg.ckpt
    datamodule = instantiate(cfg.data)
    cache = datamodule.descriptor_cache()
    records = discover_clips(datamodule.data_root(), datamodule.layout)[1]
    before = cache.status(records)
    root = cache.ensure(records, device=cfg.device, batch_size=cfg.batch_size)
    print(f"descriptor cache for {len(records)} clips: {before} -> hit at {root}")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in KINDS:
        print(f"usage: motionlab-cache {{{','.join(KINDS)}}} ckpt=PATH [data=...] [hydra overrides]", file=sys.stderr)
        sys.exit(2)
    sys.argv.pop(1)
    _descriptors()


if __name__ == "__main__":
    main()
