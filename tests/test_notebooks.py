"""The analysis notebooks run top to bottom on real run folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_command, tiny_overrides

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_compare_runs_notebook_reads_metrics(tmp_path, monkeypatch, capsys):
    run = tmp_path / "logs" / "quickstart" / "runs" / "2026-01-01_00-00-00"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"val/l1": 0.0123, "val/l1_copy_baseline": 0.02}))
    evaluation = tmp_path / "logs" / "eval" / "runs" / "x"
    evaluation.mkdir(parents=True)
    (evaluation / "eval.json").write_text(json.dumps({"metrics": {"fd_effnetlite0": 3.5}}))
    monkeypatch.chdir(tmp_path)
    notebook = json.loads((NOTEBOOKS / "compare_runs.ipynb").read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), namespace)
    out = capsys.readouterr().out
    assert "quickstart | quickstart/runs/2026-01-01_00-00-00 | 0.0123 | 0.02" in out
    assert "'fd_effnetlite0': 3.5" in out


@pytest.fixture(scope="module")
def notebook_logs(tmp_path_factory):
    """A tiny grid sweep and a tiny descriptor run with CSV curves, made through motionlab-train, under one logs/."""
    root = tmp_path_factory.mktemp("notebook_runs")
    code, _, err = run_command(["motionlab-train", "-m", "experiment=quickstart", "tags=[notebook]", "logger=none", "trainer.fast_dev_run=true",
                                "model.optimizer.lr=0.001,0.0003", *tiny_overrides(root)])
    assert code == 0, err[-2000:]
    code, _, err = run_command(["motionlab-train", "experiment=descriptor_quick", "logger=csv", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                                "trainer.log_every_n_steps=1", "callbacks.preview.every_n_steps=2", *tiny_overrides(root, "descriptor_quick")])
    assert code == 0, err[-2000:]
    return root


def _execute(name: str, root: Path, monkeypatch) -> str:
    """Run a notebook top to bottom in a fresh kernel from ``root``; returns its text outputs."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MOTIONLAB_LOGS", str(root / "logs"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    return "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)


def test_compare_sweep_notebook(notebook_logs, monkeypatch):
    out = _execute("compare_sweep.ipynb", notebook_logs, monkeypatch)
    assert "2 jobs, optimising val/l1" in out and "best job" in out and "model.optimizer.lr" in out
    assert "grid sweep" in out


def test_inspect_run_notebook(notebook_logs, monkeypatch):
    out = _execute("inspect_run.ipynb", notebook_logs, monkeypatch)
    assert "descriptor_quick/runs" in out and "val/kp_to_gt_error_pct" in out
    assert "4 training rows, 2 validations" in out and "newest preview" in out
    assert re.search(r"id_\d+: 8 frames, 4 keypoints, mean motion per frame [0-9.]+", out)


def test_explore_descriptors_notebook(notebook_logs, monkeypatch):
    out = _execute("explore_descriptors.ipynb", notebook_logs, monkeypatch)
    assert "8 identities" in out and re.search(r"64 frames; PC1\+PC2 explain \d+%", out)


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            assert not cell.get("outputs") and cell.get("execution_count") is None, path.name
