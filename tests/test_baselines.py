"""`make baselines` end to end at toy size: real runs per seed, RESULTS.csv / .md from their metafiles (motionlab-eval
table, long layout), the same numbers from a second invocation; every baseline config composes at both scales."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
BASELINE_CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "experiment" / "baseline").glob("*.yaml"))
TINY = ["data.toy_world.identities=8", "data.toy_world.frames=8", "data.toy_world.size=32", "data.image_size=32", "data.batch_size=4",
        "data.eval_batch_size=8", "callbacks.preview.every_n_steps=5", "model.net.motion_channels=[8,16]", "model.net.appearance_channels=[8,16]",
        "model.net.num_res_blocks=1"]


def _baselines(out: Path, seeds: list[str]) -> dict[str, dict]:
    result = subprocess.run([sys.executable, "-m", "experiments.baselines", "--only", "animator_v1", "--seeds", *seeds, "--out", str(out),
                             "--root", str(out), "--", *TINY], capture_output=True, text=True, cwd=ROOT, env=subprocess_env(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "RESULTS.csv", newline="") as file:
        return {row["metric"]: row for row in csv.DictReader(file)}


def test_baselines_rebuild_results_from_real_runs_and_repeat_exactly(tmp_path):
    first = _baselines(tmp_path / "first", ["1", "2"])
    assert set(first) == {"val/l1", "val/l1_ratio_to_copy", "val/psnr", "val/ssim"}
    runs = sorted((tmp_path / "first" / "logs" / "baseline_animator_v1" / "runs").iterdir())
    assert [r.name[-3:] for r in runs] == ["_s1", "_s2"]
    values = [json.loads((r / "metrics.json").read_text())["val/l1"] for r in runs]
    row = first["val/l1"]
    assert float(row["mean"]) == pytest.approx(statistics.fmean(values), rel=1e-5)
    assert float(row["std"]) == pytest.approx(statistics.stdev(values), rel=1e-4, abs=1e-9)
    assert [float(row["seed_1"]), float(row["seed_2"])] == pytest.approx(values, rel=1e-5)
    assert row["model"] == "baseline_animator_v1" and row["split"] == "val" and row["comparable_to_papers"] == "False"
    assert float(row["device_hours"]) > 0 and row["device"].startswith("1 x cpu")
    meta = json.loads((runs[0] / "metafile.json").read_text())
    assert meta["model"]["seed"] == 1 and meta["cost"]["gpu_hours"] is None and meta["manifest"]["data"]["image_size"] == 32
    assert json.loads((runs[1] / "metafile.json").read_text())["manifest"]["sha256"] == meta["manifest"]["sha256"]  # seeds share data
    report = (tmp_path / "first" / "RESULTS.md").read_text()
    assert "- commit: `" in report and "- machine: " in report and "toy sentinel" in report
    assert "| baseline_animator_v1 | none | val | " in report and "| val/l1 | " in report and "no paper's protocol" in report
    second = _baselines(tmp_path / "second", ["1"])  # another invocation, another folder: the same number
    assert second["val/l1"]["seed_1"] == row["seed_1"]


@pytest.mark.parametrize("name", BASELINE_CONFIGS)
def test_every_baseline_config_composes(name):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="motionlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment=baseline/{name}"])
    assert cfg.task_name.startswith("baseline_") and "baseline" in cfg.tags
    scale = name.rsplit("_", 1)[1]
    assert scale in ("ci", "paper") and scale in cfg.tags
    if scale == "ci":  # make baselines compares seeds: bit-reproducible CPU runs
        assert cfg.trainer.deterministic
