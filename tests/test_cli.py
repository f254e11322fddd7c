"""One convention for the eight commands: ``motionlab-<name> [KIND] key=value``; ``--help`` lists keys and an example.
The entry points run in this process (:func:`conftest.run_command`); ``tests/test_bad_inputs.py`` checks a real process."""

from __future__ import annotations

import pytest

from conftest import run_command

APPS = [
    ("motionlab-train", [], "experiment=quickstart", "ckpt_path: null"),
    ("motionlab-eval", [], "motionlab-eval ckpt_path=", "generated_dir: null"),
    ("motionlab-animate", [], "motionlab-animate ckpt=", "portrait: ???"),
    ("motionlab-lipsync", [], "motionlab-lipsync ckpt=", "template: ???"),
    ("motionlab-cache", ["descriptors"], "motionlab-cache descriptors ckpt=", "ckpt: ???"),
    ("motionlab-export", ["onnx"], "motionlab-export onnx ckpt=", "reference_outputs: null"),
    ("motionlab-export", ["fomm"], "motionlab-export fomm ckpt=", "arch: null"),
    ("motionlab-data", ["synth"], "motionlab-data synth out=", "identities: 48"),
    ("motionlab-data", ["talking"], "motionlab-data talking video=", "smooth: 3"),
    ("motionlab-data", ["synth-talking"], "motionlab-data synth-talking out=", "seconds: 4.0"),
    ("motionlab-app", [], "motionlab-app runs=logs", "host: 127.0.0.1"),
]


@pytest.mark.parametrize(("name", "kind", "example", "key"), APPS, ids=[f"{a[0]} {' '.join(a[1])}" for a in APPS])
def test_help_lists_the_keys_and_an_example(name, kind, example, key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_command([name, *kind, "--help"])
    assert code == 0, err[-2000:]
    assert "== Keys (key=value" in out and key in out and example in out
    assert not list(tmp_path.iterdir())  # help writes nothing


@pytest.mark.parametrize("name", ["motionlab-cache", "motionlab-export", "motionlab-data"])
def test_commands_with_kinds_list_them(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_command([name, "--help"])
    assert code == 0 and f"usage: {name} {{" in out and "e.g. " in out
    code, _, err = run_command([name, "nonsense", "a=1"])
    assert code == 2 and "unknown kind 'nonsense'" in err
