"""Every command shown in README.md and docs/ parses: its overrides are valid Hydra syntax and compose against the
command's packaged config (known groups, known keys), so a reader can paste any of them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# motionlab-<name> [KIND] -> the config it composes
CONFIGS = {"train": "train", "eval": "eval", "animate": "animate", "lipsync": "lipsync", "app": "app", "export": "export",
           "cache": "cache"}
DATA_KINDS = {"synth": "data_synth", "talking": "data_talking", "synth-talking": "data_synth_talking", "profile": "data_profile",
              "shard": "data_shard", "face-labels": "data_face_labels"}


def shown_commands() -> list[tuple[str, int, str]]:
    """(page, line, command) for each motionlab command in a code block, continuation lines joined."""
    found = []
    for page in PAGES:
        fence, pending, start = False, "", 0
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith("```"):
                fence = not fence
                continue
            if not fence:
                continue
            text = line.split(" # ")[0].rstrip() if not line.lstrip().startswith("#") else ""
            if pending:
                pending += " " + text.strip()
            elif re.match(r"^\s*(\.venv/bin/|srun \.venv/bin/)?motionlab-[a-z]+", text):
                pending, start = text.strip(), number
            if pending and not pending.endswith("\\"):
                found.append((page.name, start, pending))
                pending = ""
            pending = pending[:-1].rstrip() if pending.endswith("\\") else pending
    return found


def _config_and_overrides(command: str) -> tuple[str, list[str]]:
    # placeholders the reader fills in (<time>, <ckpt>, $D) stand for a plain value
    command = re.sub(r"\$[A-Z][A-Z0-9_]*|<[^<>]+>", "X", command.replace("srun ", ""))
    words = shlex.split(command)
    name = Path(words[0]).name.removeprefix("motionlab-")
    args = [w for w in words[1:] if w not in ("-m", "--multirun")]
    if name == "data":
        return DATA_KINDS[args[0]], args[1:]
    if name in ("export", "cache"):
        return CONFIGS[name], args[1:]
    if name == "eval" and args[:1] == ["table"]:
        return "eval_table", args[1:]
    return CONFIGS[name], args


COMMANDS = shown_commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) >= 60 and {page for page, _, _ in COMMANDS} >= {"README.md", "training.md", "lipsync.md", "animation.md"}


@pytest.mark.parametrize("page, line, command", COMMANDS, ids=[f"{p}:{n}" for p, n, _ in COMMANDS])
def test_shown_command_composes(page, line, command):
    config, args = _config_and_overrides(command)
    if args in (["--help"], ["-h"]):
        return
    assert not any(a.startswith("[") for a in args), f"{page}:{line}: optional parts in brackets cannot be pasted: {command}"
    overrides = []
    for parsed in OverridesParser.create().parse_overrides(args):
        if parsed.is_sweep_override():  # a multirun's first job
            values = list(parsed.sweep_string_iterator())
            overrides.append(f"{parsed.get_key_element()}={values[0]}")
        else:
            overrides.append(parsed.input_line)
    with initialize_config_module("motionlab.conf", version_base="1.3"):
        compose(config, overrides)


def config_comment_commands() -> list[tuple[str, int, str]]:
    """(config, line, command) for each comment line of conf/ that is a command (``# motionlab-...`` or
    ``#   motionlab-...``, continuation lines joined): optional ``[...]`` parts dropped, UPPER_CASE placeholders
    treated like ``<...>``, a trailing remark after two spaces or ``: `` cut."""
    found = []
    for path in sorted((ROOT / "motionlab" / "conf").rglob("*.yaml")):
        pending, start = "", 0
        for number, line in enumerate(path.read_text().splitlines(), 1):
            text = line[1:].strip() if line.startswith("#") else ""
            if pending:
                pending += " " + text
            elif re.match(r"^motionlab-[a-z]+ ", text):
                pending, start = text, number
            if pending and not pending.endswith("\\"):
                command = re.split(r"\s{2,}\(|: | \(", pending)[0]
                command = re.sub(r"\s\[[^\]]*=[^\]]*\]", "", command)
                command = re.sub(r"\b[A-Z][A-Z0-9_]*(\|[A-Z0-9_.]+)*\b", "X", command)
                found.append((str(path.relative_to(ROOT / "motionlab" / "conf")), start, command))
                pending = ""
            pending = pending[:-1].rstrip() if pending.endswith("\\") else pending
    return found


CONFIG_COMMANDS = config_comment_commands()


@pytest.mark.parametrize("config, line, command", CONFIG_COMMANDS, ids=[f"{c}:{n}" for c, n, _ in CONFIG_COMMANDS])
def test_config_comment_command_composes(config, line, command):
    """The command a config's comment shows works as written (what a user copies from the config they read)."""
    assert len(CONFIG_COMMANDS) >= 25
    test_shown_command_composes(config, line, command)
