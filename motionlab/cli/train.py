"""``motionlab-train``: the Hydra entry point of :func:`motionlab.train.train`."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import hydra_app


def _train(cfg: DictConfig) -> float | None:
    from motionlab.train import metric_value, train

    metrics, objects = train(cfg)
    if objects["trainer"].is_global_zero:  # under DDP every rank returns the same metrics
        from rich.console import Console

        console = Console()
        for name in sorted(k for k in metrics if k.startswith(("val/", "val_best/", "test/"))):
            console.print(f"  {name:<28} {metrics[name]:.5f}")
        console.print(f"run folder: {cfg.paths.output_dir}")
    return metric_value(metrics, cfg.get("optimized_metric"))


main = hydra_app("train", _train)

if __name__ == "__main__":
    main()
