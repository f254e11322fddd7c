"""One convention for the seven commands: ``motionlab-<name> [KIND] key=value``; ``--help`` lists keys and an example."""

from __future__ import annotations

import pytest

from conftest import run_cli

APPS = [
    ("motionlab-train", [], "experiment=quickstart", "ckpt_path: null"),
    ("motionlab-eval", [], "motionlab-eval ckpt_path=", "generated_dir: null"),
    ("motionlab-animate", [], "motionlab-animate ckpt=", "portrait: ???"),
    ("motionlab-lipsync", [], "motionlab-lipsync ckpt=", "template: ???"),
    ("motionlab-cache", ["descriptors"], "motionlab-cache descriptors ckpt=", "ckpt: ???"),
    ("motionlab-export", ["onnx"], "motionlab-export onnx ckpt=", "reference_outputs: null"),
    ("motionlab-export", ["fomm"], "motionlab-export fomm ckpt=", "model: null"),
    ("motionlab-data", ["synth"], "motionlab-data synth out=", "identities: 48"),
    ("motionlab-data", ["talking"], "motionlab-data talking video=", "smooth: 3"),
    ("motionlab-data", ["synth-talking"], "motionlab-data synth-talking out=", "seconds: 4.0"),
]


@pytest.mark.parametrize(("name", "kind", "example", "key"), APPS, ids=[f"{a[0]} {' '.join(a[1])}" for a in APPS])
def test_help_lists_the_keys_and_an_example(name, kind, example, key, tmp_path):
    result = run_cli(name, *kind, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== Keys (key=value" in result.stdout and key in result.stdout and example in result.stdout
    assert not list(tmp_path.iterdir())  # help writes nothing


@pytest.mark.parametrize("name", ["motionlab-cache", "motionlab-export", "motionlab-data"])
def test_commands_with_kinds_list_them(name, tmp_path):
    listed = run_cli(name, "--help", cwd=tmp_path)
    assert listed.returncode == 0 and f"usage: {name} {{" in listed.stdout and "e.g. " in listed.stdout
    wrong = run_cli(name, "nonsense", "a=1", cwd=tmp_path)
    assert wrong.returncode == 2 and "unknown kind 'nonsense'" in wrong.stderr
