"""``motionlab-cache descriptors ckpt=... [data=...]``: precompute per-clip descriptors of a checkpoint."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from motionlab.cli.app import dispatch
from motionlab.utils.config import validate_config


def _descriptors(cfg: DictConfig) -> None:
    from motionlab.data.datasets import discover_clips
    from motionlab.models import load_model

    validate_config(cfg, required=("ckpt", "data", "paths"))
    load_model(cfg.ckpt, component="kp_detector")  # a bad checkpoint fails before any data is generated or read
    with open_dict(cfg):
        cfg.data.descriptor_ckpt = cfg.ckpt
    datamodule = instantiate(cfg.data)
    cache = datamodule.descriptor_cache()
    records = discover_clips(datamodule.data_root(), datamodule.layout)[1]
    before = cache.status(records)
    root = cache.ensure(records, device=cfg.device, batch_size=cfg.batch_size)
    print(f"descriptor cache for {len(records)} clips: {before} -> hit at {root}")


def main() -> None:
    dispatch("motionlab-cache", {"descriptors": ("cache", _descriptors)})

if __name__ == "__main__":
    main()
