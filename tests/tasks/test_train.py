"""Training through the real entry points: every experiment, resume, config errors, multirun, W&B."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import (
    GUIDED_ADAPTERS,
    TINY_NETS,
    compose_train,
    motionlab_bin,
    run_command,
    subprocess_env,
    tiny_overrides,
)

from motionlab.train import train
from motionlab.utils.checkpoint import WeightMismatchError, find_last_checkpoint, load_checkpoint
from motionlab.utils.config import ConfigError

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_every_experiment(experiment, tmp_path, request):
    extra, lipsync = [], None
    if experiment.startswith("adapter"):  # maps into a trained descriptor model
        descriptor = "guided_descriptor_checkpoint" if experiment in GUIDED_ADAPTERS else "descriptor_ckpt"
        extra = [f"data.descriptor_ckpt={request.getfixturevalue(descriptor)}"]
    if experiment == "animator_descriptors_quick":  # the detector on every batch; the fixture goes through the cache
        extra = [f"model.descriptor_model.ckpt={request.getfixturevalue('descriptor_ckpt')}"]
    if "lipsync" in experiment:  # needs the earlier lip-sync stages
        lipsync = request.getfixturevalue("lipsync_checkpoints")
    if experiment == "lora_lipsync_speaker":  # adapts a trained U-Net
        extra = [f"init_ckpt={lipsync['unet']}"]
    if experiment == "tpsmm_avd_quick":  # the second stage of a trained TPSMM
        extra = [f"init_ckpt={request.getfixturevalue('tpsmm_ckpt')}"]
    if experiment in ("lora_musetalk_speaker", "musetalk_stage2_quick"):  # adapts / continues a trained MuseTalk U-Net
        extra = [f"init_ckpt={request.getfixturevalue('musetalk_checkpoint')}"]
    if experiment == "lora_animator_target":  # adapts a trained Animator
        extra = [f"init_ckpt={request.getfixturevalue('animator_base_checkpoint')}"]
    overrides = [f"experiment={experiment}", "trainer.fast_dev_run=true", "logger=none", *tiny_overrides(tmp_path, experiment, lipsync), *extra]
    cfg = compose_train(overrides, tmp_path / "run")
    metrics, objects = train(cfg)
    # Lightning counts every optimiser's step: a GAN's batch is a generator and a critic step
    assert objects["trainer"].global_step == (2 if cfg.model.get("discriminator") else 1)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == pytest.approx(metrics)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def test_resume_gives_identical_weights(tmp_path):
    common = ["experiment=quickstart", "logger=none", "trainer.deterministic=true", *tiny_overrides(tmp_path)]
    train(compose_train([*common, "trainer.max_epochs=2"], tmp_path / "straight"))
    train(compose_train([*common, "trainer.max_epochs=1"], tmp_path / "first"))
    first_last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    _, objects = train(compose_train([*common, "trainer.max_epochs=2", f"resume={first_last}"], tmp_path / "resumed"))
    assert objects["trainer"].current_epoch == 2
    straight, resumed = _weights(tmp_path / "straight/checkpoints/last.ckpt"), _weights(tmp_path / "resumed/checkpoints/last.ckpt")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    one_epoch = _weights(first_last)
    assert any(not torch.equal(one_epoch[k], straight[k]) for k in straight)  # the second epoch did train


def test_last_checkpoint_follows_training_when_the_metric_stops_improving(tmp_path):
    # mode=max on a falling loss: only epoch 0 is "best", yet last.ckpt must hold the final epoch (resume point)
    cfg = compose_train(["experiment=quickstart", "logger=none", "trainer.max_epochs=2", "callbacks.model_checkpoint.mode=max",
                         *tiny_overrides(tmp_path)], tmp_path / "run")
    _, objects = train(cfg)
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["epoch_000.ckpt", "last.ckpt"]
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == objects["trainer"].global_step
    assert load_checkpoint(folder / "epoch_000.ckpt")["epoch"] == 0


def test_checkpoint_is_weights_only_and_carries_the_config(tmp_path):
    cfg = compose_train(["experiment=quickstart", "logger=none", "trainer.max_epochs=1", *tiny_overrides(tmp_path)], tmp_path / "run")
    train(cfg)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")  # torch.load(weights_only=True)
    meta = checkpoint["motionlab"]
    assert meta["task"] == "animator" and meta["config"]["model"]["net"]["name"] == "animator_v1"
    assert meta["models"] == {"net": {"name": "animator_v1", "component": None, "args": {
        "input_size": 32, "image_channels": 3, "motion_channels": [8, 16], "appearance_channels": [8, 16], "num_res_blocks": 1, "max_flow": 0.5}}}
    assert "RNGStateCallback" in checkpoint["callbacks"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".*tmp*"))
    previews = tmp_path / "run" / "previews"  # every 5 of 12 steps, and at the end
    assert sorted(p.name for p in previews.glob("*.png")) == ["step_0000005.png", "step_0000010.png", "step_0000012.png"]
    assert len(list(previews.glob("*.gif"))) == 3


def test_resume_last_finds_the_newest_run(tmp_path):
    common = ["experiment=quickstart", "logger=none", "trainer.max_epochs=1", *tiny_overrides(tmp_path)]
    log_dir = tmp_path / "logs" / "quickstart" / "runs"
    train(compose_train(common, log_dir / "a"))
    assert find_last_checkpoint(tmp_path / "logs", "quickstart") == log_dir / "a" / "checkpoints" / "last.ckpt"
    _, objects = train(compose_train([*common, "trainer.max_epochs=2", "resume=last"], log_dir / "b"))
    assert objects["trainer"].current_epoch == 2
    with pytest.raises(FileNotFoundError, match="no checkpoints/last.ckpt"):
        find_last_checkpoint(tmp_path / "logs", "other_experiment")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("data.batch_size=many", "data.batch_size"),
        ("+model.net.depth=3", "model.net.depth"),
        ("loss.identity_strength=strong", "loss.identity_strength"),
        ("data.augmentation.hflip=[1]", "data.augmentation.hflip"),
    ],
)
def test_bad_config_value_fails_before_training(override, key, tmp_path):
    cfg = compose_train(["experiment=quickstart", "logger=none", *tiny_overrides(tmp_path), override], tmp_path / "run")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / ".cache").exists()  # nothing was built, not even the data


def test_bad_config_on_the_command_line_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_command(["motionlab-train", "experiment=quickstart", "logger=none", "trainer.max_epochs=abc", *tiny_overrides(tmp_path)])
    assert code == 2 and "Traceback" not in err
    assert "config key 'trainer.max_epochs' must be" in err


def test_multirun_writes_one_folder_per_job(tmp_path):
    # as a user types it: no paths.root_dir or hydra.sweep.dir, the sweep lands under ./logs of the working directory
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.root_dir=")]
    result = subprocess.run(
        [motionlab_bin("motionlab-train"), "-m", "experiment=quickstart", "logger=csv", "trainer.max_epochs=1", "model.optimizer.lr=0.001,0.0003", *overrides],
        capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "quickstart" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    learning_rates = []
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert "val/l1" in metrics and (job / "checkpoints" / "last.ckpt").is_file()
        learning_rates.append(load_checkpoint(job / "checkpoints" / "last.ckpt")["motionlab"]["config"]["model"]["optimizer"]["lr"])
    assert learning_rates == [0.001, 0.0003]
    with open(sweep / "multirun_summary.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "finished"), ("1", "finished")]
    assert "model.optimizer.lr=0.001" in rows[0]["overrides"] and float(rows[1]["val/l1"]) == json.loads((jobs[1] / "metrics.json").read_text())["val/l1"]
    assert "| job | overrides | status | seconds | val/l1 |" in (sweep / "multirun_summary.md").read_text()


def test_wandb_offline_run_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_train(["experiment=quickstart", "logger=wandb", "trainer.max_epochs=1", *tiny_overrides(tmp_path)], tmp_path / "run")
    metrics, _ = train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    import wandb

    assert wandb.run is None  # train() finished the run
    assert metrics["model/params_total"] > 0


def test_debug_fast_dev_run_preset(tmp_path):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("callbacks.")]
    cfg = compose_train(["experiment=quickstart", "debug=fdr", *overrides], tmp_path / "run")
    assert cfg.task_name == "debug" and cfg.trainer.fast_dev_run and not cfg.callbacks and not cfg.logger
    _, objects = train(cfg)
    assert objects["trainer"].global_step == 1


@pytest.mark.parametrize("search, experiment", [("animator", "quickstart"), ("descriptor", "descriptor_quick"), ("adapter", "adapter_paired_quick"),
                                                ("lipsync", "lipsync_quick"), ("liveportrait", "liveportrait_quick")])
def test_every_hparams_search_is_a_seeded_optuna_search_of_its_experiment(search, experiment):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="motionlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", f"hparams_search={search}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed is not None and cfg.hydra.mode.name == "MULTIRUN"
    for key in sweeper.params:  # every searched key exists in the experiment's config
        assert OmegaConf.select(cfg, key, throw_on_missing=False) is not None, key


def test_init_from_starts_from_pretrained_weights_at_step_zero(tmp_path):
    common = ["experiment=quickstart", "logger=none", "trainer.max_epochs=1", *tiny_overrides(tmp_path)]
    train(compose_train(common, tmp_path / "first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    cfg = compose_train([*common, f"init_ckpt={first}", "trainer.limit_train_batches=1"], tmp_path / "second")
    from hydra.utils import instantiate

    task = instantiate(cfg.model, loss=cfg.loss)
    task.init_from(first)
    weights = _weights(first)
    assert all(torch.equal(value, weights[f"net.{key}"]) for key, value in task.net.state_dict().items())
    _, objects = train(cfg)
    assert objects["trainer"].global_step == 1  # a fresh run (resuming would continue at the first run's step)
    with pytest.raises(ConfigError, match="'init_ckpt' and 'resume' exclude each other"):
        train(compose_train([*common, f"init_ckpt={first}", f"resume={first}"], tmp_path / "third"))
    other = compose_train([*common, f"init_ckpt={first}", "model.net.num_res_blocks=2"], tmp_path / "fourth")
    with pytest.raises(WeightMismatchError, match=r"missing keys \(\d+\): bottleneck\.1\."):
        train(other)


def test_several_optimizers_each_get_their_group_and_schedule():
    """The base task's seam for adversarial terms: one optimiser (and schedule) per named parameter group."""
    import functools

    from motionlab.tasks.base import MotionlabTask
    from motionlab.tasks.schedules import warmup_cosine

    class TwoNetworks(MotionlabTask):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.net, self.critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)

        def parameter_groups(self):
            return {"net": self.net.parameters(), "critic": self.critic.parameters()}

    task = TwoNetworks(optimizer={"net": functools.partial(torch.optim.Adam, lr=1e-3), "critic": functools.partial(torch.optim.SGD, lr=0.1)},
                       scheduler={"critic": functools.partial(warmup_cosine, warmup_steps=2)})
    task.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    configured = task.configure_optimizers()
    assert not task.automatic_optimization and len(configured) == 2
    net, critic = configured
    assert isinstance(net["optimizer"], torch.optim.Adam) and "lr_scheduler" not in net
    assert [p for g in critic["optimizer"].param_groups for p in g["params"]] == list(task.critic.parameters())
    assert critic["lr_scheduler"]["interval"] == "step"
    with pytest.raises(ValueError, match=r"schedulers for \['gan'\] have no optimizer"):
        TwoNetworks(optimizer={"net": functools.partial(torch.optim.Adam)}, scheduler={"gan": functools.partial(warmup_cosine)})


def test_the_same_run_folder_again_resumes_and_a_finished_run_keeps_its_metrics(tmp_path):
    """What run_name (and a requeued cluster job) relies on: a run in a folder that holds last.ckpt resumes from it;
    once finished, starting it again trains nothing and leaves metrics.json as it was."""
    common = ["experiment=quickstart", "logger=none", "trainer.deterministic=true", *tiny_overrides(tmp_path)]
    train(compose_train([*common, "trainer.max_epochs=1"], tmp_path / "run"))
    metrics, objects = train(compose_train([*common, "trainer.max_epochs=2"], tmp_path / "run"))  # resumed: one more epoch
    assert objects["trainer"].current_epoch == 2 and metrics["trainer/global_step"] == 2 * train_steps_per_epoch(objects)
    written = (tmp_path / "run" / "metrics.json").read_text()
    again, _ = train(compose_train([*common, "trainer.max_epochs=2"], tmp_path / "run"))
    assert again == json.loads(written) and (tmp_path / "run" / "metrics.json").read_text() == written


def train_steps_per_epoch(objects: dict) -> int:
    return len(objects["datamodule"].train_dataloader())


def test_trainer_arguments_need_no_plus_and_a_run_that_never_validates_is_refused_at_the_start(tmp_path):
    """trainer.max_steps / val_check_interval / check_val_every_n_epoch are plain keys; a run that would stop before
    its first validation while its checkpoints keep the best val/l1 fails before the first step, saying why."""
    from motionlab.callbacks.validation_schedule import first_validation_step

    assert first_validation_step(12, 12, 1) == 12 and first_validation_step(12, 5, 2) == 17 and first_validation_step(12, 4, None, accumulate=2) == 2
    common = ["experiment=quickstart", "logger=none", *tiny_overrides(tmp_path)]
    metrics, objects = train(compose_train([*common, "trainer.max_steps=3", "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null"],
                                           tmp_path / "validates"))
    assert objects["trainer"].global_step == 3 and "val/l1" in metrics
    with pytest.raises(ConfigError, match=r"stops after 2 steps but first validates after step \d+ .* so val/l1 .* is never measured"):
        train(compose_train([*common, "trainer.max_steps=2"], tmp_path / "never"))
    assert not list((tmp_path / "never").rglob("*.ckpt"))


def test_log_model_makes_the_pretrained_folder_the_runs_model_artifact(tmp_path):
    """logger.wandb.log_model=true on an offline run (which Lightning refuses): the run's pretrained folder is logged
    as its W&B model artifact, kept in the offline run for `wandb sync`. Run as a user runs it, in its own process (its
    own W&B service, the run's record complete when the command ends)."""
    result = subprocess.run([motionlab_bin("motionlab-train"), "experiment=quickstart", "logger=wandb", "logger.wandb.log_model=true",
                             "trainer.max_epochs=1", "run_name=artifact", *tiny_overrides(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = (tmp_path / "logs").glob("*/runs/artifact")
    (run,) = (folder / "wandb").glob("offline-run-*")
    record = b"".join(path.read_bytes() for path in run.glob("*.wandb"))
    assert b"model-" in record and b"model.safetensors" in record and (folder / "pretrained" / "model.safetensors").is_file()


def test_lora_on_your_own_clips_with_the_override_the_config_shows(animator_base_checkpoint, tmp_path):
    """conf/data/target.yaml's own command, on a folder of three mp4 clips: the layout is found by itself, the target
    clip trains, validation sees at most data.max_val_frames of the held-out frames; a layout that does not match the
    folder says which layout it holds and the override that reads it."""
    import numpy as np

    from motionlab.data.video_io import ClipError, write_video

    clips = tmp_path / "my_clips"
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    for shade, name in enumerate(("anna", "ben", "cleo")):
        frames = [np.stack([np.roll(ramp, 2 * i)[None].repeat(64, 0), ramp[:, None].repeat(64, 1), np.full((64, 64), 80.0 * shade)], -1)
                  for i in range(40)]
        write_video(clips / f"{name}.mp4", [frame.astype(np.uint8) for frame in frames], fps=25, crf=10)
    overrides = ["experiment=lora_animator_target", f"init_ckpt={animator_base_checkpoint}", f"data.root={clips}",
                 "data.toy_world=null", "data.identity=ben", "logger=none", f"paths.root_dir={tmp_path}", "data.image_size=32",
                 "data.max_frames=4", "data.repeats=1", "data.batch_size=4", "data.max_val_frames=5", "trainer.max_epochs=1",
                 *TINY_NETS["lora_animator_target"]]
    metrics, objects = train(compose_train(overrides, tmp_path / "target"))
    datamodule = objects["datamodule"]
    assert datamodule.identity == "ben" and len(datamodule.datasets["val"]) <= 5 and "val/l1" in metrics
    with pytest.raises(ClipError, match=r"no clips for data.layout='seed' .* it holds 3 clips in the videos layout: give data.layout=auto"):
        train(compose_train([*overrides, "data.layout=seed"], tmp_path / "seed"))


def test_a_job_that_fails_after_training_is_listed_as_failed(tmp_path, monkeypatch):
    """A run that trained and wrote its metrics but then failed (its optimized_metric was never logged) is listed as
    failed, with why, not as finished (the app's run list and multirun summaries read the same record)."""
    from motionlab.utils.runs import RUN_STATUS_FILE, find_runs

    monkeypatch.chdir(tmp_path)
    code, _, err = run_command(["motionlab-train", "experiment=quickstart", "logger=none", "trainer.max_epochs=1", "optimized_metric=val/nothing",
                                "callbacks.model_checkpoint.monitor=val/l1", *tiny_overrides(tmp_path)])
    assert code == 2 and "optimized_metric 'val/nothing' was not logged" in err, err[-2000:]
    (run,) = find_runs(tmp_path / "logs")
    assert run.status == "failed" and (run.folder / "metrics.json").is_file()
    assert "val/nothing" in json.loads((run.folder / RUN_STATUS_FILE).read_text())["error"]


def test_the_csv_logger_keeps_a_resumed_runs_earlier_rows(tmp_path, recwarn):
    """logger=csv in a folder that holds metrics.csv (a resumed run) keeps its rows and appends, new columns included;
    Lightning's own writer would delete the file."""
    from motionlab.utils.csv_logger import ResumableCSVLogger

    first = ResumableCSVLogger(tmp_path, name="csv", version="")
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.log_metrics({"train/loss": 0.5}, step=1)
    first.save()
    resumed = ResumableCSVLogger(tmp_path, name="csv", version="")
    resumed.log_metrics({"train/loss": 0.25, "val/l1": 0.1}, step=2)
    resumed.save()
    assert (tmp_path / "csv" / "metrics.csv").read_text().splitlines() == ["step,train/loss,val/l1", "0,1.0,", "1,0.5,", "2,0.25,0.1"]
    assert not [w for w in recwarn if "will be deleted" in str(w.message)]
