"""litdata shards of a clip dataset: written by `motionlab-data shard`, read by data=clips_stream with the folder
reader's samples and order, trained from."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import compose_train, run_command

from motionlab.data.datamodule import PortraitVideoDataModule, ShardedClipDataModule
from motionlab.utils.errors import InputError


@pytest.fixture(scope="module")
def toy_shards(toy_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "toy"
    code, stdout, err = run_command(["motionlab-data", "shard", f"root={toy_world}", f"out={out}"])
    assert code == 0, err
    assert "as litdata shards" in stdout and (out / "index.json").is_file()
    return out


def _first_epoch(datamodule) -> list[dict]:
    datamodule.setup("fit")
    return list(datamodule.train_dataloader()) + list(datamodule.val_dataloader())


def test_shards_serve_the_folder_readers_batches_under_one_seed(toy_world, toy_shards, tmp_path):
    common = dict(image_size=32, val_fraction=0.25, batch_size=4, eval_batch_size=8, shuffle_seed=7, cache_dir=str(tmp_path))
    torch.manual_seed(0)
    folder = _first_epoch(PortraitVideoDataModule(root=str(toy_world), layout="seed", **common))
    torch.manual_seed(0)  # the neighbour frames are drawn from torch's generator, as in training (seed_everything)
    shards = _first_epoch(ShardedClipDataModule(root=str(toy_shards), **common))
    assert len(folder) == len(shards) > 2
    for a, b in zip(folder, shards):
        assert a.keys() == b.keys() and a["identity"] == b["identity"]
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key


def test_training_from_shards(toy_shards, tmp_path):
    overrides = ["experiment=quickstart", "data=clips_stream", f"data.root={toy_shards}", "logger=none", "trainer.max_epochs=1",
                 f"paths.root_dir={tmp_path}", "data.image_size=32", "data.val_fraction=0.25", "data.test_fraction=0.0", "data.batch_size=4",
                 "data.eval_batch_size=8", "data.num_workers=0", "data.persistent_workers=false", "data.max_frames=null",
                 "callbacks.preview.every_n_steps=5", "callbacks.preview.clip_frames=4",
                 "model.net.motion_channels=[8,16]", "model.net.appearance_channels=[8,16]", "model.net.num_res_blocks=1"]
    from motionlab.train import train

    metrics, objects = train(compose_train(overrides, tmp_path / "run"))
    assert objects["trainer"].global_step > 0 and torch.isfinite(torch.tensor(metrics["val/l1"]))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["val/l1"] == pytest.approx(metrics["val/l1"])


def test_a_folder_without_shards_is_refused_with_the_command_to_write_them(tmp_path):
    datamodule = ShardedClipDataModule(root=str(tmp_path), cache_dir=str(tmp_path))
    with pytest.raises(InputError, match="motionlab-data shard"):
        datamodule.setup("fit")
