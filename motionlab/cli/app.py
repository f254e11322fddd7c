"""The one convention of motionlab's commands: ``motionlab-<name> [KIND] key=value ...``.

Each command (or each KIND of one) is a Hydra app over ``conf/<config>.yaml``: its keys are set as ``key=value``,
``--help`` prints them with their defaults, a description and an example (the config's ``hydra.help`` header and
footer), and ``--cfg job`` shows the composed config. Commands with kinds list them on ``--help`` or when none is given.
Expected failures are one line on stderr and exit code 2 (:mod:`motionlab.utils.errors`).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from motionlab.utils.config import ConfigError, resolved_container
from motionlab.utils.errors import EXIT_USAGE, debug_enabled, describe, expected_error

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


# run folders are <time>_<process id> (conf/hydra/default.yaml); only such a folder is ever removed
RUN_FOLDER = re.compile(r"^\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+$")


def _remove_empty_run_folder() -> None:
    """After an expected failure, delete this process's run folder if it holds nothing but Hydra's config and the log:
    a failed start leaves no debris."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    if not RUN_FOLDER.match(folder.name) or not str(os.getpid()) == folder.name.rsplit("_", 1)[1]:
        return
    produced = [p for p in folder.rglob("*") if p.is_file() and ".hydra" not in p.relative_to(folder).parts and p.suffix != ".log"]
    if not produced:
        shutil.rmtree(folder, ignore_errors=True)


def _mark_run(status: str, error: BaseException | None) -> None:
    """Record in this process's run folder (when it has one and it holds more than a failed start) that the job ended
    ``failed`` or ``cancelled``, with why: the run lists (the app, multirun summaries) show the job as it ended, not as
    "finished" because metrics were written before the failure (:data:`motionlab.utils.runs.RUN_STATUS_FILE`)."""
    from hydra.core.hydra_config import HydraConfig

    from motionlab.utils.io import write_json
    from motionlab.utils.runs import RUN_STATUS_FILE

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    if RUN_FOLDER.match(folder.name) or (folder / ".hydra").is_dir():
        if folder.is_dir() and folder.resolve() != Path.cwd().resolve():
            write_json(folder / RUN_STATUS_FILE, {"status": status, "error": f"{type(error).__name__}: {error}" if error is not None else None})


# Hydra's flags that read files beside the package's configs: --experimental-rerun unpickles its file, so it is refused;
# a config folder may name any code to build (its _target_s), which is Hydra's nature, so its code is announced
REFUSED_FLAGS = ("--experimental-rerun",)
CONFIG_DIR_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp")
# where the packaged configs' _target_s point; a user config naming code elsewhere gets a warning
PACKAGED_CODE = ("motionlab.", "lightning.", "torch.", "torchmetrics.")


# Checkpoint keys are `ckpt` (a command's main checkpoint or weights folder) and `<role>_ckpt` (any other); `resume`
# continues a run. The spellings of earlier releases still work for this one, with a one-line deprecation each.
RENAMED_KEYS = {
    "train": {"ckpt_path": "resume", "init_from": "init_ckpt"},
    "eval": {"ckpt_path": "ckpt", "adapter": "adapter_ckpt"},
    "animate": {"adapter": "adapter_ckpt", "lora_file": "lora_ckpt", "relative": "predictor.relative",
                "adapt_movement_scale": "predictor.adapt_movement_scale"},
    "lipsync": {"lora_file": "lora_ckpt"},
    "data_talking": {"smooth": "smooth_window", "audio_encoder": "audio_encoder_ckpt"},
    "data_face_labels": {"smooth": "smooth_window"},
}
# renamed groups of keys: the old prefix becomes the new one
RENAMED_PREFIXES = {"animate": {"liveportrait.": "predictor."}}
# renamed in every command wherever the key sits (data.descriptor_checkpoint, model.syncnet.pretrained, ...)
RENAMED_TAILS = {"descriptor_checkpoint": "descriptor_ckpt", "pretrained": "ckpt", "descriptor_model.path": "descriptor_model.ckpt"}


def renamed_overrides(argv: list[str], config_name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """``argv`` with old key spellings replaced by the current ones, and the (old, new) pairs replaced."""
    table, prefixes, result, renamed = RENAMED_KEYS.get(config_name, {}), RENAMED_PREFIXES.get(config_name, {}), [], []
    for arg in argv:
        if arg.startswith("-"):  # Hydra's flags
            result.append(arg)
            continue
        prefix = arg[: len(arg) - len(arg.lstrip("+~"))]
        key, equals, value = arg[len(prefix):].partition("=")
        if config_name == "train" and prefix == "+" and key.startswith("trainer.") and key.removeprefix("trainer.") in trainer_keys():
            # every Trainer argument is in conf/trainer now: the "+" once needed to add one would fail
            result.append(f"{key}{equals}{value}")
            renamed.append((f"+{key}", key))
            continue
        new = table.get(key)
        if new is None:
            new = next((to + key[len(old):] for old, to in prefixes.items() if key.startswith(old)), None)
        if new is None:
            new = next((key[: len(key) - len(old)] + to for old, to in RENAMED_TAILS.items() if key == old or key.endswith("." + old)), None)
        result.append(arg if new is None else f"{prefix}{new}{equals}{value}")
        if new is not None:
            renamed.append((key, new))
    return result, renamed


def trainer_keys() -> set[str]:
    """The Trainer arguments conf/trainer/default.yaml sets."""
    return {key for key in OmegaConf.load(CONF_DIR / "trainer" / "default.yaml") if not key.startswith("_")}


def refused_flag(argv: list[str]) -> str | None:
    """The first argument that names a refused Hydra flag (``--flag`` or ``--flag=value``), or None."""
    return next((arg for arg in argv if arg.split("=", 1)[0] in REFUSED_FLAGS), None)


def foreign_targets(cfg: DictConfig) -> list[str]:
    """The ``_target_`` values of ``cfg`` (unresolved) outside the code the packaged configs name."""
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and not target.startswith(PACKAGED_CODE):
                found.append(target)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(OmegaConf.to_container(cfg, resolve=False))
    return sorted(set(found))


def packaged_keys(config_name: str) -> set[str]:
    """The top-level keys a command's packaged config defines: its own keys and the groups of its defaults list."""
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{config_name}.yaml"), resolve=False)
    groups = {next(iter(entry)).removeprefix("override ").lstrip("/").split("/")[0] for entry in node.get("defaults", []) if isinstance(entry, dict)}
    return (set(node) | groups) - {"defaults"}


def check_command_keys(cfg: DictConfig, config_name: str, prog: str) -> None:
    """Refuse keys added on the command line (``+key=``) that the command does not have, naming its keys. Training
    configs are checked against the signatures of what they build (:func:`motionlab.utils.config.validate_config`)."""
    known = packaged_keys(config_name) | {"hydra"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"config key '{unknown[0]}' is not an option of {prog}; its keys are: {', '.join(sorted(known - {'hydra'}))}")


def command_options(cfg: DictConfig) -> dict:
    """A command's own keys, resolved: without ``hydra`` and ``limits``, which :func:`hydra_app` applies."""
    return {key: value for key, value in resolved_container(cfg).items() if key not in ("hydra", "limits")}


def hydra_app(config_name: str, run: Callable[[DictConfig], object], prog: str | None = None) -> Callable[[], object]:
    """The console entry point running ``run(cfg)`` as the Hydra app of ``conf/<config_name>.yaml``.

    Expected failures (:func:`motionlab.utils.errors.expected_error`) print one line to stderr and exit with 2;
    bugs keep their traceback; ``MOTIONLAB_DEBUG=1`` shows every traceback.
    """
    prog = prog or f"motionlab-{config_name}"
    started = []

    @hydra.main(version_base="1.3", config_path="../conf", config_name=config_name)
    def main(cfg: DictConfig):
        started.append(True)
        if any(arg.split("=", 1)[0] in CONFIG_DIR_FLAGS for arg in sys.argv[1:]):
            targets = foreign_targets(cfg)
            if targets:
                print(f"{prog}: warning: the configs of --config-dir name code that is not motionlab's and will be run: "
                      f"{', '.join(targets)} (read that folder's configs before you run them)", file=sys.stderr)
        try:
            if config_name != "train":
                check_command_keys(cfg, config_name, prog)
            # imported here: --help and argument errors never load torch
            from motionlab.data.video_io import InputLimits, input_limits, limited

            with limited(InputLimits.from_config(cfg.limits) if "limits" in cfg else input_limits()):
                return run(cfg)
        except KeyboardInterrupt as interrupt:
            _mark_run("cancelled", interrupt)
            raise
        except Exception as error:
            cause = expected_error(error)
            if cause is None or debug_enabled():
                _mark_run("failed", error)
                raise
            print(f"{prog}: error: {describe(cause)}", file=sys.stderr)
            _remove_empty_run_folder()
            _mark_run("failed", cause)
            sys.exit(EXIT_USAGE)

    def entry():
        started.clear()
        sys.argv[1:], renamed = renamed_overrides(sys.argv[1:], config_name)
        for old, new in renamed:
            print(f"{prog}: deprecated: '{old}' is now '{new}' (the old spelling works until the next release)", file=sys.stderr)
        if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
            print(command_help(config_name, [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]))
            sys.exit(0)
        flag = refused_flag(sys.argv[1:])
        if flag is not None:
            print(f"{prog}: error: {flag.split('=', 1)[0]} is disabled: it unpickles the file it is given, which can run "
                  "any code; rerun with the same key=value overrides (the run folder's .hydra/overrides.yaml lists them)", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        try:
            return main()
        except SystemExit as exit:
            # Hydra reports a bad override or config group (its message already printed) with 1 before the job
            # starts; that is a usage error too
            if exit.code == 1 and not started:
                sys.exit(EXIT_USAGE)
            raise

    return entry


def config_groups() -> str:
    """The config groups under ``conf/`` and their options, one ``group: a, b`` line each (Hydra's own groups left out)."""
    lines = []
    for folder in sorted(p for p in CONF_DIR.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        group = folder.relative_to(CONF_DIR).as_posix()
        options = sorted(path.stem for path in folder.glob("*.yaml"))
        if options and not group.startswith("hydra"):
            lines.append(f"{group}: {', '.join(options)}")
    return "\n".join(lines)


def command_help(config_name: str, overrides: list[str]) -> str:
    """``--help`` of a command: its config's help template (header, config groups, keys with their defaults, footer)
    filled in here rather than by Hydra, whose help lists every config group of every command through the config
    loader (seconds); nothing is imported beyond Hydra and OmegaConf."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    help_node = cfg.hydra.help
    keys = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
    text = str(help_node.template)
    for placeholder, value in (("${hydra.help.header}", str(help_node.header)), ("${hydra.help.footer}", str(help_node.footer)),
                               ("$APP_CONFIG_GROUPS", config_groups()), ("$CONFIG", keys)):
        text = text.replace(placeholder, value)
    return text.rstrip()


def _help_lines(config_name: str) -> tuple[str, list[str]]:
    """The first line of a config's ``hydra.help.header`` and the example lines of its footer."""
    help_node = OmegaConf.load(CONF_DIR / f"{config_name}.yaml").hydra.help
    examples = [line.strip() for line in help_node.footer.splitlines() if line.strip().startswith("motionlab-")]
    return help_node.header.splitlines()[0].split(": ", 1)[-1], examples


def dispatch(prog: str, kinds: dict[str, tuple[str, Callable[[DictConfig], object]]]) -> None:
    """Run ``kinds[sys.argv[1]]`` (a config name and the function it feeds) as a Hydra app with the rest of the
    arguments as overrides; list the kinds, from their configs' help, on ``--help`` (exit 0) or when the first
    argument is not a kind (exit 2)."""
    first = sys.argv[1] if len(sys.argv) > 1 else None
    if first in kinds:
        del sys.argv[1]
        hydra_app(*kinds[first], prog=f"{prog} {first}")()
        return
    lines = [f"usage: {prog} {{{','.join(kinds)}}} key=value ...   ({prog} KIND --help lists the keys of KIND)", ""]
    for name, (config_name, _) in kinds.items():
        summary, examples = _help_lines(config_name)
        lines += [f"  {name:<14} {summary}", *(f"  {'':<14} e.g. {example}" for example in examples if f" {name} " in example)]
    help_asked = first in ("-h", "--help")
    print("\n".join(lines), file=sys.stdout if help_asked else sys.stderr)
    if not help_asked:
        print(f"{prog}: error: " + (f"unknown kind {first!r}" if first else "give a kind"), file=sys.stderr)
    sys.exit(0 if help_asked else 2)
