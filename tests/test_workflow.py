"""The research workflow beyond one run: Optuna sweeps with their study storage, tags on multiruns, the submitit
launcher and multi-process DDP training, through the real entry points."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import run_command, tiny_overrides


def _sweep_folder(root: Path, task_name: str) -> Path:
    (sweep,) = (root / "logs" / task_name / "multiruns").iterdir()
    return sweep


def _summary_rows(sweep: Path) -> list[dict]:
    with open(sweep / "multirun_summary.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_optuna_sweep_writes_its_results_summary_and_sqlite_study(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, out, err = run_command([
        "motionlab-train", "-m", "experiment=quickstart", "hparams_search=animator", "tags=[optuna_test]", "logger=none",
        "trainer.fast_dev_run=true", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=animator",
        *tiny_overrides(tmp_path),
    ])
    assert code == 0, err[-3000:]
    sweep = _sweep_folder(tmp_path, "quickstart")
    jobs = {p.name: json.loads((p / "metrics.json").read_text())["val/l1"] for p in sweep.iterdir() if p.name.isdigit()}
    assert sorted(jobs) == ["0", "1", "2"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna"
    assert set(results["best_params"]) == {"model.optimizer.lr", "loss.identity", "loss.alignment"}
    assert results["best_value"] == pytest.approx(min(jobs.values()))
    rows = _summary_rows(sweep)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "finished"), ("1", "finished"), ("2", "finished")]
    assert all("model.optimizer.lr=" in r["overrides"] for r in rows)
    study = optuna.load_study(study_name="animator", storage=storage)  # the documented storage holds the trials
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(jobs.values()))


def test_multirun_without_tags_stops_before_any_job(tmp_path):
    code, _, err = run_command(["motionlab-train", "-m", "logger=none", "trainer.max_epochs=1,2", *tiny_overrides(tmp_path)])
    assert code == 2 and "a multirun needs tags" in err
    assert not list((tmp_path / "logs").glob("**/metrics.json"))


def test_submitit_local_multirun_runs_two_jobs(tmp_path):
    code, _, err = run_command([
        "motionlab-train", "-m", "hydra/launcher=submitit_local", "experiment=quickstart", "tags=[submitit_test]", "logger=none",
        "trainer.max_epochs=1", "model.optimizer.lr=0.001,0.0003", "hydra.launcher.timeout_min=10", *tiny_overrides(tmp_path),
    ])
    assert code == 0, err[-3000:]
    sweep = _sweep_folder(tmp_path, "quickstart")
    assert [(r["job"], r["status"]) for r in _summary_rows(sweep)] == [("0", "finished"), ("1", "finished")]
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # the jobs ran as submitit jobs, in their own processes
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
