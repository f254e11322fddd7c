"""What motionlab reads from files is data, never code: stored configs are checked, not resolved, and rebuilt without
Hydra; shards, arrays, ONNX graphs, adapters and sequences are checked before anything is allocated or decoded; writers
leave the old output or the new one whole. The commands' one-line errors for the same files: tests/cli/test_bad_inputs.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motionlab.utils.config import ConfigError, build_stored, check_stored
from motionlab.utils.errors import InputError

AUGMENTATION = "motionlab.data.augment.PairedAugmentation"
DATAMODULE = "motionlab.data.datamodule.PortraitVideoDataModule"

# plain stored values, and interpolation / resolver strings to hide in them
plain = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(alphabet="abc_./ {}:$'", max_size=8).filter(lambda t: "${" not in t),
                     lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet="abc_", min_size=1, max_size=5), children, max_size=3),
                     max_leaves=12)
interpolation = st.builds(lambda resolver, body, before, after: f"{before}${{{resolver}{body}}}{after}",
                          st.sampled_from(["", "oc.create:", "oc.env:", "oc.decode:", "oc.select:", "hydra:", "eval:"]),
                          st.text(alphabet="abc_.:'{}[], /", max_size=20), st.text(max_size=3).filter(lambda t: "$" not in t),
                          st.text(max_size=3).filter(lambda t: "$" not in t))


def _plant(tree, value, path: list):
    """``tree`` with ``value`` placed at a new leaf along ``path`` (indices choose among existing children)."""
    if not path or not isinstance(tree, (dict, list)) or not tree:
        return {"planted": value} if not isinstance(tree, list) else [*tree, value]
    if isinstance(tree, dict):
        key = sorted(tree)[path[0] % len(tree)]
        return {**tree, key: _plant(tree[key], value, path[1:])}
    index = path[0] % len(tree)
    return [*tree[:index], _plant(tree[index], value, path[1:]), *tree[index + 1 :]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(st.text(alphabet="abc", min_size=1, max_size=4), plain, max_size=4), value=interpolation,
       path=st.lists(st.integers(0, 9), max_size=4))
def test_any_interpolation_anywhere_in_a_stored_config_is_refused(tree, value, path):
    check_stored(tree, "file")  # plain data passes
    with pytest.raises(ConfigError, match=r"^file: .*(holds the interpolation|holds an interpolation)"):
        check_stored(_plant(tree, value, path), "file")


@settings(max_examples=100, deadline=None)
@given(value=interpolation)
def test_build_stored_never_resolves(value):
    """Whatever the interpolation, building refuses it before OmegaConf could see it (nothing is written)."""
    node = {"_target_": AUGMENTATION, "hflip": 0.5, "hue": value}
    with pytest.raises(ConfigError, match="interpolation"):
        build_stored(node, (AUGMENTATION,), "file")


def test_build_stored_builds_allowed_classes_with_checked_values(tmp_path):
    from motionlab.data.augment import PairedAugmentation

    built = build_stored({"_target_": AUGMENTATION, "hflip": 0.25, "hue": 0.0}, (AUGMENTATION,), "file")
    assert isinstance(built, PairedAugmentation) and built.hflip == 0.25
    with pytest.raises(ConfigError, match=r"'data.hflip' must be float .*got 'x'"):
        build_stored({"_target_": AUGMENTATION, "hflip": "x"}, (AUGMENTATION,), "file")
    with pytest.raises(ConfigError, match=r"'data._target_' is 'os.system', which a stored config may not name"):
        build_stored({"_target_": "os.system", "command": "touch pwned"}, (AUGMENTATION,), "file")
    with pytest.raises(ConfigError, match=r"'data._args_' is not allowed"):
        build_stored({"_target_": AUGMENTATION, "_args_": [1]}, (AUGMENTATION,), "file")


def test_stored_datamodule_takes_the_commands_cache_folder(tmp_path):
    """A stored cache_dir is never used: the datamodule generates and caches under the command's own folder."""
    from motionlab.data import stored_datamodule

    meta = {"config": {"data": {"_target_": DATAMODULE, "toy_world": {"identities": 4, "frames": 4, "size": 32, "seed": 0},
                                "cache_dir": str(tmp_path / "named_by_the_file"), "image_size": 32,
                                "augmentation": {"_target_": AUGMENTATION, "hue": 0.0}}}}
    datamodule = stored_datamodule(meta, "file.ckpt", tmp_path / "own_cache")
    datamodule.setup("fit")
    assert (tmp_path / "own_cache").is_dir() and not (tmp_path / "named_by_the_file").exists()


def test_config_dir_naming_foreign_code_is_announced(tmp_path):
    """Hydra builds what a --config-dir names (its nature); the command says which foreign code that is first."""
    (tmp_path / "conf" / "extra").mkdir(parents=True)
    (tmp_path / "conf" / "extra" / "evil.yaml").write_text("_target_: os.system\ncommand: touch pwned\n")
    from conftest import run_command

    code, _, err = run_command(["motionlab-export", "fomm", "--config-dir", str(tmp_path / "conf"), "+extra=evil", "ckpt=missing.ckpt", "out=x.pth.tar"])
    assert code == 2 and "warning: the configs of --config-dir name code that is not motionlab's and will be run: os.system" in err


def test_restores_a_folder_moved_aside_by_a_killed_writer(tmp_path):
    """A writer killed between its two renames leaves only the previous folder, moved aside: the next writer puts it
    back instead of deleting it as scratch, also when that writer then fails."""
    from motionlab.utils.io import atomic_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".template.{dead.pid}.abcd1234.old.tmp").mkdir()
    (tmp_path / f".template.{dead.pid}.abcd1234.old.tmp" / "frame.jpg").write_text("previous")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "template", replaces=lambda folder: True):
        raise RuntimeError("the rerun fails")
    assert (tmp_path / "template" / "frame.jpg").read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["template"]


def test_object_arrays_are_refused(tmp_path):
    from motionlab.data.landmarks import read_landmarks

    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"objects.npy holds Python objects, which are never unpickled"):
        read_landmarks(tmp_path / "objects.npy")


def test_adapter_rank_is_checked_before_layers_are_built(tmp_path, monkeypatch):
    """A file claiming a rank its matrices do not have fails before peft allocates anything."""
    from safetensors.torch import save_file

    from motionlab.models import lora

    save_file({"up1.lora_A.default.weight": torch.zeros(2, 4), "up1.lora_B.default.weight": torch.zeros(4, 2)}, tmp_path / "a.safetensors",
              metadata={"format": lora.ADAPTER_FORMAT, "lora": json.dumps({"rank": 10**6}), "model": json.dumps({"name": "x", "args": {}}),
                        "base_sha256": "0" * 64, "base_name": "base.ckpt"})
    monkeypatch.setattr(lora, "add_lora", lambda *a: pytest.fail("layers were built"))
    with pytest.raises(InputError, match=r"metadata says rank 1000000, but up1.lora_A.default.weight has shape \(2, 4\)"):
        lora.read_adapter(tmp_path / "a.safetensors")


def test_sequence_size_is_checked_before_decompressing(tmp_path):
    from motionlab.data.video_io import InputLimits, limited
    from motionlab.inference.sequence import FORMAT, SequenceError, read_sequence

    frames = np.zeros((80, 64, 64, 3), np.uint8)  # 2 MB of frames, a few kB compressed
    np.savez_compressed(tmp_path / "s.npz", format=np.array(FORMAT), portrait=frames[0], driver=frames, generated=frames,
                        fps=np.array(25.0))
    with limited(InputLimits(max_sequence_mb=1)), pytest.raises(SequenceError, match=r"decompresses to 2 MB, over the limit of 1 MB"):
        read_sequence(tmp_path / "s.npz")
    assert read_sequence(tmp_path / "s.npz").driver.shape == (80, 64, 64, 3)  # within the default limit it reads


def test_shard_reader_refuses_a_pickled_chunk_before_reading_it(tmp_path):
    """litdata's pickle serializer would run code on read: the index is checked first (nothing is unpickled)."""
    import litdata

    from motionlab.data.shards import ShardClips

    litdata.optimize(fn=_evil_items, inputs=[str(tmp_path / "pwned")] * 2, output_dir=str(tmp_path / "shards"), chunk_bytes="1MB", num_workers=1, verbose=False,
                     start_method="fork")
    with pytest.raises(InputError, match=r"declare the serializer 'pickle'"):
        ShardClips(str(tmp_path / "shards"))
    assert not (tmp_path / "pwned").exists()


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _evil_items(marker: str):
    yield {"meta": _Touch(marker)}


def test_shard_writer_keeps_folders_it_did_not_write(tmp_path, toy_world):
    from motionlab.data.shards import ShardClips, write_clip_shards

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    for out in (tmp_path / "mine", toy_world, toy_world / "inside", toy_world.parent):
        with pytest.raises(InputError, match="(not a shard folder this command wrote|may not be, hold or lie inside root)"):
            write_clip_shards(toy_world, out)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me" and (toy_world / "id_0000.png").is_file()
    write_clip_shards(toy_world, tmp_path / "shards")
    write_clip_shards(toy_world, tmp_path / "shards")  # its own folder: replaced whole
    assert len(ShardClips(str(tmp_path / "shards")).records()) == len(list(toy_world.glob("*.png")))


def test_onnx_files_are_checked_and_tied_to_their_weights(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from motionlab.utils.onnx_files import OnnxRunner, check_onnx_file, tag_source

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    tag_source(tmp_path / "g.onnx", "abc123")
    check_onnx_file(tmp_path / "g.onnx", "abc123")
    assert OnnxRunner(tmp_path / "g.onnx", source="abc123")(np.array([-1.0, 2.0], np.float32)).tolist() == [0.0, 2.0]
    with pytest.raises(InputError, match=r"g.onnx was exported from other weights \(abc123\), not from these \(def456\)"):
        OnnxRunner(tmp_path / "g.onnx", source="def456")


def test_app_jobs_refuse_crafted_checkpoints(tmp_path, animator_base_checkpoint, toy_world):
    """The app's jobs read checkpoints through the same door as the commands: a crafted stored config is refused."""
    import shutil

    from motionlab.app.server import Viewer

    runs = tmp_path / "runs"
    runs.mkdir()
    payload = torch.load(animator_base_checkpoint, weights_only=True)
    payload["motionlab"]["config"]["data"]["augmentation"]["hue"] = (
        "${oc.create:'{_target_: pathlib.Path.write_text, self: {_target_: pathlib.Path, _args_: [" + str(tmp_path / "pwned") + "]}, data: x}'}")
    torch.save(payload, runs / "crafted.ckpt")
    portrait = Path(shutil.copy(toy_world / "id_0000.png", tmp_path / "portrait.png"))
    from conftest import face_video

    driver = face_video(tmp_path / "driver.mp4", frames=4)
    viewer = Viewer(runs, tmp_path / "work")
    (tmp_path / "work").mkdir()
    with pytest.raises(ConfigError, match=r"'config.data.augmentation.hue' holds the interpolation"):
        viewer.animate(str(runs / "crafted.ckpt"), str(portrait), str(driver), keep=True)
    assert not (tmp_path / "pwned").exists() and not (runs / "app").exists()


def test_shard_writer_fails_on_a_full_disk_without_hanging(tmp_path, toy_world, monkeypatch):
    """litdata's worker processes waited on each other forever when one died of a full disk; the writer runs in this
    process, so the disk error is this command's error, and nothing is left behind."""
    import errno

    from litdata.streaming.writer import BinaryWriter

    from motionlab.data.shards import write_clip_shards

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(BinaryWriter, "write_chunk", full)
    with pytest.raises(OSError, match="No space left on device while writing the shards") as raised:
        write_clip_shards(toy_world, tmp_path / "shards", chunk_bytes="4kB")
    assert raised.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []
