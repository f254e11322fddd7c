"""One convention for the eight commands: ``motionlab-<name> [KIND] key=value``; ``--help`` lists keys and an example.
The entry points run in this process (:func:`conftest.run_command`); ``tests/cli/test_bad_inputs.py`` checks a real process."""

from __future__ import annotations

import pytest
from conftest import run_command

APPS = [
    ("motionlab-train", [], "experiment=quickstart", "resume: null"),
    ("motionlab-eval", [], "motionlab-eval ckpt=", "generated_dir: null"),
    ("motionlab-animate", [], "motionlab-animate ckpt=", "portrait: ???"),
    ("motionlab-lipsync", [], "motionlab-lipsync ckpt=", "audio: ???"),
    ("motionlab-cache", ["descriptors"], "motionlab-cache descriptors ckpt=", "ckpt: ???"),
    ("motionlab-export", ["onnx"], "motionlab-export onnx ckpt=", "reference_outputs: null"),
    ("motionlab-export", ["fomm"], "motionlab-export fomm ckpt=", "arch: null"),
    ("motionlab-data", ["synth"], "motionlab-data synth out=", "identities: 48"),
    ("motionlab-data", ["talking"], "motionlab-data talking video=", "smooth_window: 3"),
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


# every old spelling of a checkpoint key (and smooth): (command argv, old override, the new key's line in --cfg job)
OLD_SPELLINGS = [
    (["motionlab-train", "experiment=quickstart"], "ckpt_path=last", "'ckpt_path' is now 'resume'", "resume: last"),
    (["motionlab-train", "experiment=quickstart"], "init_from=base.ckpt", "'init_from' is now 'init_ckpt'", "init_ckpt: base.ckpt"),
    (["motionlab-train", "experiment=animator_descriptors_quick"], "data.descriptor_checkpoint=d.ckpt", "'data.descriptor_checkpoint' is now 'data.descriptor_ckpt'",
     "descriptor_ckpt: d.ckpt"),
    (["motionlab-train", "experiment=animator_descriptors_quick"], "model.descriptor_model.path=d.ckpt",
     "'model.descriptor_model.path' is now 'model.descriptor_model.ckpt'", "ckpt: d.ckpt"),
    (["motionlab-train", "experiment=lipsync_quick"], "model.syncnet.pretrained=s.ckpt", "'model.syncnet.pretrained' is now 'model.syncnet.ckpt'", "ckpt: s.ckpt"),
    (["motionlab-train", "experiment=quickstart"], "+trainer.limit_train_batches=2", "'+trainer.limit_train_batches' is now 'trainer.limit_train_batches'",
     "limit_train_batches: 2"),
    (["motionlab-eval"], "ckpt_path=c.ckpt", "'ckpt_path' is now 'ckpt'", "ckpt: c.ckpt"),
    (["motionlab-eval", "ckpt=c.ckpt"], "adapter=a.ckpt", "'adapter' is now 'adapter_ckpt'", "adapter_ckpt: a.ckpt"),
    (["motionlab-animate", "ckpt=c.ckpt"], "lora_file=l.safetensors", "'lora_file' is now 'lora_ckpt'", "lora_ckpt: l.safetensors"),
    (["motionlab-lipsync", "ckpt=c.ckpt"], "lora_file=l.safetensors", "'lora_file' is now 'lora_ckpt'", "lora_ckpt: l.safetensors"),
    (["motionlab-data", "talking", "video=v.mp4", "out=o"], "smooth=5", "'smooth' is now 'smooth_window'", "smooth_window: 5"),
    (["motionlab-data", "talking", "video=v.mp4", "out=o"], "audio_encoder=e.ckpt", "'audio_encoder' is now 'audio_encoder_ckpt'", "audio_encoder_ckpt: e.ckpt"),
]


@pytest.mark.parametrize("argv, old, message, line", OLD_SPELLINGS, ids=[case[1].split("=")[0] + "-" + case[0][0] for case in OLD_SPELLINGS])
def test_old_checkpoint_spellings_still_work(argv, old, message, line, tmp_path, monkeypatch):
    """The checkpoint keys of earlier releases compose to the new ones, each with one deprecation line."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_command([*argv, old, "--cfg", "job"])
    assert code == 0, err[-2000:]
    prog = " ".join(argv[:2]) if argv[0] == "motionlab-data" else argv[0]
    deprecations = [text for text in err.splitlines() if "deprecated" in text]
    assert deprecations == [f"{prog}: deprecated: {message} (the old spelling works until the next release)"]
    assert any(text.strip() == line for text in out.splitlines()), out[-3000:]


def test_the_version_and_the_library_module_run_as_a_command():
    """motionlab.__version__ is the installed distribution's (pyproject.toml); python -m motionlab.train, the library
    behind motionlab-train, says which command to run instead of silently doing nothing."""
    import subprocess
    import sys
    from importlib.metadata import version

    import motionlab

    assert motionlab.__version__ == version("motionlab") and motionlab.__version__.count(".") == 2
    result = subprocess.run([sys.executable, "-m", "motionlab.train", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "motionlab-train" in result.stderr and "motionlab.cli.train" in result.stderr


@pytest.mark.parametrize("module, argv", [("motionlab.cli.train", []), ("motionlab.cli.animate", []), ("motionlab.cli.lipsync", []),
                                          ("motionlab.cli.evaluate", []), ("motionlab.cli.evaluate", ["table"]), ("motionlab.cli.export", ["onnx"]),
                                          ("motionlab.cli.data", ["synth"]), ("motionlab.cli.cache", ["descriptors"]), ("motionlab.cli.viewer", [])])
def test_help_loads_neither_torch_nor_lightning(module, argv, tmp_path):
    """--help of every command, run as ``python -m motionlab.cli.X`` (as its console script runs it), imports no
    torch, Lightning or torchmetrics: it answers at once (times: docs/benchmarks.md)."""
    import subprocess
    import sys

    probe = (f"import runpy, sys\nsys.argv = ['{module}', *{argv!r}, '--help']\ntry:\n    runpy.run_module('{module}', run_name='__main__')\n"
             "except SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
             "print('LOADED', sorted(m for m in ('torch', 'lightning', 'torchmetrics', 'peft') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== Keys (key=value" in result.stdout and result.stdout.rstrip().endswith("LOADED []"), result.stdout[-500:]


@pytest.mark.parametrize("module", ["motionlab.inference.animate", "motionlab.inference.lipsync", "motionlab.tasks"])
def test_inference_runs_without_the_training_stack(module):
    """The inference paths (animate, lip-sync, every predictor) import neither Lightning, torchmetrics nor peft, nor
    torchvision's models (torch._dynamo behind them), nor librosa, scipy.signal, kornia or onnx (each 0.3-1 s; used
    where they are needed): a command that only runs a model starts in about the time torch takes to import
    (docs/benchmarks.md)."""
    import subprocess
    import sys

    probe = (f"import importlib, sys\nimportlib.import_module('{module}')\n"
             "print('LOADED', sorted(m for m in ('lightning', 'torchmetrics', 'peft', 'torchvision.models', 'scipy.signal', 'librosa', 'kornia', 'onnx') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("LOADED []"), result.stdout[-500:]


def test_the_trainer_config_sets_every_trainer_argument():
    """conf/trainer/default.yaml lists every argument of Lightning's Trainer (but logger, callbacks and plugins, which
    come from their own groups), so trainer.<key>=value never needs a "+"."""
    import inspect

    import lightning.pytorch as pl
    from omegaconf import OmegaConf

    from motionlab.cli.app import CONF_DIR

    parameters = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks", "plugins"}
    assert set(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")) - {"_target_"} == parameters
