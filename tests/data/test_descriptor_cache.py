"""Descriptor caches: miss, hit, stale; the datamodule serves cached descriptors; the CLI."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

import numpy as np
import torch
from conftest import motionlab_bin, read_rgb, subprocess_env, tiny_overrides

from motionlab.data.datamodule import PortraitVideoDataModule
from motionlab.data.datasets import discover_clips
from motionlab.data.descriptor_cache import DescriptorCache
from motionlab.models import load_model


def test_cache_miss_hit_and_stale(descriptor_ckpt, toy_world, tmp_path, caplog):
    records = discover_clips(toy_world)[1]
    checkpoint = tmp_path / "descriptor.ckpt"
    shutil.copy(descriptor_ckpt, checkpoint)
    cache = DescriptorCache(tmp_path / "cache", checkpoint, image_size=32)
    assert cache.status(records) == "missing"
    root = cache.ensure(records)
    assert cache.status(records) == "hit"
    arrays = cache.load("id_0003")
    assert arrays["value"].shape == (8, 4, 2) and arrays["jacobian"].shape == (8, 4, 2, 2) and arrays["portrait_value"].shape == (4, 2)
    detector = load_model(checkpoint, component="kp_detector")
    frames = torch.from_numpy(np.stack([read_rgb(p) for p in sorted((toy_world / "id_0003_video").glob("*.png"))]))
    with torch.no_grad():
        direct = detector(frames.permute(0, 3, 1, 2).float() / 255.0).value.numpy()
    assert np.allclose(arrays["value"], direct, atol=1e-5)
    stamp = (root / "id_0003.npz").stat().st_mtime_ns
    cache.ensure(records)
    assert (root / "id_0003.npz").stat().st_mtime_ns == stamp  # a hit does not recompute

    manifest = json.loads(cache.manifest_path.read_text())
    manifest["clips"]["id_0003"]["frames"] = 99  # the clip changed since caching
    cache.manifest_path.write_text(json.dumps(manifest))
    assert cache.status(records) == "stale"
    with caplog.at_level(logging.WARNING):
        cache.ensure(records)
    assert "stale" in caplog.text and cache.status(records) == "hit"

    payload = torch.load(checkpoint, weights_only=True)
    payload["epoch"] = 123  # another checkpoint at the same path: another key
    torch.save(payload, checkpoint)
    assert DescriptorCache(tmp_path / "cache", checkpoint, image_size=32).root != root


def test_datamodule_serves_cached_descriptors(descriptor_ckpt, toy_world, tmp_path):
    datamodule = PortraitVideoDataModule(root=str(toy_world), image_size=32, val_fraction=0.25, batch_size=2,
                                         cache_dir=str(tmp_path), descriptor_ckpt=str(descriptor_ckpt))
    datamodule.prepare_data()
    datamodule.setup("fit")
    sample = datamodule.datasets["train"][3]
    assert sample["driver_descriptors"].shape == (4, 2) and sample["portrait_descriptors"].shape == (4, 2)
    assert sample["driver_descriptor_jacobians"].shape == (4, 2, 2)
    cached = datamodule.descriptor_cache().load(sample["identity"])
    assert torch.equal(sample["driver_descriptors"], torch.from_numpy(cached["value"][sample["frame_index"]]))


def test_cache_cli(descriptor_ckpt, tmp_path):
    command = [motionlab_bin("motionlab-cache"), "descriptors", f"ckpt={descriptor_ckpt}", *tiny_overrides(tmp_path, "descriptor_quick")[:6]]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "descriptor cache for 8 clips: missing -> hit" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(tmp_path), timeout=300)
    assert "hit -> hit" in again.stdout
    assert subprocess.run([motionlab_bin("motionlab-cache")], capture_output=True, text=True).returncode == 2
