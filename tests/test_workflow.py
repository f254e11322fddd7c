"""The research workflow beyond one run: Optuna sweeps with their study storage, tags on multiruns, the submitit
launcher and multi-process DDP training, through the real entry points."""

from __future__ import annotations

import csv
import json
import os
import subprocess
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


def test_slurm_launcher_asks_for_a_task_per_device_on_every_node(tmp_path, monkeypatch):
    """hydra/launcher=slurm turns trainer.num_nodes / devices into the sbatch script Lightning's SLURM environment
    expects (a task per device, started by srun) with the requeue signal; built by submitit as the plugin builds it."""
    import submitit

    # submitit looks for srun, as on a cluster's login node; it is never run here
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="motionlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                                                      "experiment=quickstart", f"paths.root_dir={tmp_path}"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout"))
    shared = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name", "stderr_to_stdout"}
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items() if k not in ("_target_", "submitit_folder")})
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --signal=USR2@120", "srun "):
        assert line in script, line
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm


def test_ddp_cpu_run_trains_and_its_checkpoint_validates_alike_in_one_process(tmp_path):
    """trainer=ddp_cpu: two gloo processes train one run (one folder, rank zero writes); its last.ckpt, validated in
    one process, gives the metrics the two ranks reported together (same split on every rank, metrics reduced)."""
    import lightning as L
    import torch
    from conftest import compose_train, motionlab_bin, subprocess_env
    from hydra.utils import instantiate

    from motionlab.utils.checkpoint import load_checkpoint

    # an even val set: DistributedSampler pads an odd one with a repeated sample, which one process would not see
    common = ["experiment=quickstart", "logger=csv", "trainer.max_epochs=1", "trainer.deterministic=true", *tiny_overrides(tmp_path)]
    result = subprocess.run([motionlab_bin("motionlab-train"), *common, "trainer=ddp_cpu", "run_name=ddp"],
                            capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run folder:") == 1  # rank zero reports
    (run,) = (tmp_path / "logs" / "quickstart" / "runs").iterdir()
    assert run.name == "ddp" and (run / "checkpoints" / "last.ckpt").is_file() and list((run / "previews").glob("*.png"))
    reported = json.loads((run / "metrics.json").read_text())
    assert reported["trainer/global_step"] > 0

    cfg = compose_train([*common, "logger=none"], tmp_path / "single")
    datamodule, task = instantiate(cfg.data), instantiate(cfg.model, loss=cfg.loss)
    task.load_state_dict(load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"])
    (validated,) = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False).validate(task, datamodule=datamodule, verbose=False)
    assert len(datamodule.datasets["val"]) % 2 == 0
    for name in ("val/l1", "val/psnr", "val/ssim", "val/l1_copy_baseline"):
        assert validated[name] == pytest.approx(reported[name], rel=1e-5, abs=1e-6), name
    assert torch.isfinite(torch.tensor(validated["val/l1"]))


def test_gpu_configs_and_bf16_autocast_on_cpu(tmp_path):
    """trainer=gpu / gpu_bf16 / ddp compose as documented; bf16-mixed autocast (what gpu_bf16 runs) trains the
    quickstart on CPU too, the same code path without a GPU."""
    import torch
    from conftest import compose_train

    from motionlab.train import train

    for trainer, precision, strategy in (("gpu", "16-mixed", "auto"), ("gpu_bf16", "bf16-mixed", "auto"), ("ddp", "32-true", "ddp")):
        cfg = compose_train(["experiment=quickstart", f"trainer={trainer}", *tiny_overrides(tmp_path)], tmp_path / trainer)
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == precision and cfg.trainer.get("strategy") == strategy
    cfg = compose_train(["experiment=quickstart", "logger=none", "trainer.fast_dev_run=true", "trainer.precision=bf16-mixed", *tiny_overrides(tmp_path)],
                        tmp_path / "bf16")
    metrics, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed" and torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_compile_compiles_model_net_in_place(tmp_path):
    """compile=true compiles model.net in place before fitting: the task's net is compiled and its state-dict keys are
    those of the eager network, so checkpoints load into one (the compiled step itself: the slow test below)."""
    from conftest import compose_train

    from motionlab.models import model_from_spec
    from motionlab.train import train

    cfg = compose_train(["experiment=quickstart", "logger=none", "train=false", "compile=true", *tiny_overrides(tmp_path)], tmp_path / "compiled")
    _, objects = train(cfg)
    net = objects["model"].net
    assert net._compiled_call_impl is not None
    assert set(net.state_dict()) == set(model_from_spec(net.model_info.spec()).state_dict())


@pytest.mark.slow
def test_compiled_quickstart_step_trains(tmp_path):
    """A fast_dev_run step through the compiled net (the CPU's inductor: minutes of compilation, hence slow; the
    wiring is tested above) gives a finite loss."""
    import torch
    from conftest import compose_train

    from motionlab.train import train

    cfg = compose_train(["experiment=quickstart", "logger=none", "trainer.fast_dev_run=true", "compile=true", *tiny_overrides(tmp_path)],
                        tmp_path / "compiled")
    metrics, objects = train(cfg)
    assert objects["model"].net._compiled_call_impl is not None and torch.isfinite(torch.tensor(metrics["train/loss"]))
