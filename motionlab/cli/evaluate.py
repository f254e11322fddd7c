"""``motionlab-eval``: score a checkpoint or a folder of generated videos (eval.json / .md / .html), or several models on
the same clips side by side (compare.json / .md), each with a metafile; ``motionlab-eval table`` joins run folders into
one table. The work lives in :mod:`motionlab.cli.eval_run`, imported when a command runs (``--help`` stays fast)."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from motionlab.cli.app import hydra_app


def evaluate(cfg: DictConfig) -> dict:
    """Run the evaluation ``cfg`` describes; returns the result dict written to ``eval.json``."""
    from motionlab.cli.eval_run import evaluate as run

    return run(cfg)


def _table(cfg: DictConfig) -> None:
    from motionlab.cli.eval_run import table

    table(cfg)


def main() -> None:
    """``motionlab-eval KEY=VALUE ...``, or ``motionlab-eval table runs=[...] out=...``."""
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        del sys.argv[1]
        hydra_app("eval_table", _table, prog="motionlab-eval table")()
        return
    hydra_app("eval", evaluate)()


if __name__ == "__main__":
    main()
