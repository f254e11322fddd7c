"""Under DDP (2 CPU processes, gloo) each metric equals its single-process value on the same data."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    driver = rand(4, 5, 3, 32, 32)
    return {
        "driver": driver,
        "generated": (driver + 0.05 * rand(4, 5, 3, 32, 32)).clamp(0, 1),
        "portrait": rand(4, 3, 32, 32),
        "keypoints": rand(4, 5, 6, 2) * 32,
        "keypoints_generated": rand(4, 5, 6, 2) * 32,
        "embeddings": rand(4, 16),
        "embeddings_generated": rand(4, 16),
        "audio": rand(4, 40, 8),
        "video": rand(4, 40, 8),
        "features_real": rand(8, 6).double() * 3,
        "features_fake": rand(8, 6).double() * 2 + 1,
    }


def _metric_values(rank: int, world: int) -> dict[str, float]:
    """Update every metric with this rank's share (samples rank, rank + world, ...) and compute."""
    from motionlab.geometry import Keypoints
    from motionlab.metrics.colour import ColourDrift
    from motionlab.metrics.descriptor import AverageKeypointDistance
    from motionlab.metrics.frechet import FeatureFrechetDistance
    from motionlab.metrics.identity import IdentityDistance
    from motionlab.metrics.reconstruction import ResidualMagnitude, reconstruction_metrics
    from motionlab.metrics.sync import SyncScores
    from motionlab.metrics.temporal import Flicker, MotionSmoothness, TemporalDifferenceConsistency

    data = _data()
    mine = {k: v[rank::world] for k, v in data.items()}
    values: dict[str, float] = {}

    recon = reconstruction_metrics()
    recon.update(mine["generated"].flatten(0, 1), mine["driver"].flatten(0, 1))
    values.update({k: float(v) for k, v in recon.compute().items()})
    for name, metric, args in [
        ("tdc", TemporalDifferenceConsistency(), (mine["generated"], mine["driver"])),
        ("flicker", Flicker(static_threshold=0.5), (mine["generated"], mine["driver"])),
        ("smoothness", MotionSmoothness(), (mine["keypoints"],)),
        ("akd", AverageKeypointDistance(), (Keypoints(mine["keypoints_generated"].flatten(0, 1), size=(64, 64), convention="pixels"),
                                            Keypoints(mine["keypoints"].flatten(0, 1), size=(64, 64), convention="pixels"))),
        ("aed", IdentityDistance(), (mine["embeddings_generated"], mine["embeddings"])),
        ("residual", ResidualMagnitude(), (mine["generated"][:, 0], mine["portrait"])),
    ]:
        metric.update(*args)
        values[name] = float(metric.compute())
    drift = ColourDrift()
    drift.update(mine["portrait"], mine["generated"])
    values.update({k: float(v) for k, v in drift.compute().items()})
    sync = SyncScores(max_offset=5)
    for video, audio in zip(mine["video"], mine["audio"]):
        sync.update(video, audio)
    values.update({k: float(v) for k, v in sync.compute().items()})
    frechet = FeatureFrechetDistance(6)
    frechet.update(mine["features_real"], real=True)
    frechet.update(mine["features_fake"], real=False)
    values["frechet"] = float(frechet.compute())
    return values


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        values = _metric_values(rank, world)
        from motionlab.metrics.temporal import TemporalDifferenceConsistency

        local = TemporalDifferenceConsistency(sync_on_compute=False)  # this rank's share alone
        data = _data()
        local.update(data["generated"][rank::world], data["driver"][rank::world])
        if rank == 0:
            queue.put((values, float(local.compute())))
        dist.barrier()  # both ranks are done with collectives before either tears its gloo threads down
    finally:
        dist.destroy_process_group()


def test_metrics_reduce_across_two_processes():
    single = _metric_values(0, 1)
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_worker, args=(2, _free_port(), queue), nprocs=2, start_method="spawn", join=True)
    distributed, rank0_alone = queue.get()
    assert rank0_alone != pytest.approx(single["tdc"], rel=1e-6)  # so equality below needs the reduction
    assert distributed.keys() == single.keys()
    for name, value in single.items():
        assert distributed[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
