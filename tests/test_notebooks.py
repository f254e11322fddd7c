"""The analysis notebooks run top to bottom on real run folders."""

from __future__ import annotations

import json
from pathlib import Path

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
