"""``motionlab-app``: the local web viewer and demo (:mod:`motionlab.app`)."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import command_options, hydra_app


def _serve(cfg: DictConfig) -> None:
    from motionlab.app.server import serve

    options = command_options(cfg)
    print(f"motionlab-app: serving {options['runs']} on http://{options['host']}:{options['port']} (Ctrl-C stops it)")
    serve(**options)


main = hydra_app("app", _serve)

if __name__ == "__main__":
    main()
