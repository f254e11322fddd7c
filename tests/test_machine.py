"""The CPU profile from /proc/cpuinfo, on constructed text: model, cores, the ISA flags that matter, native bf16 / int8."""

from __future__ import annotations

from motionlab.utils.machine import cpu_profile

ZEN1 = """processor\t: 0
model name\t: AMD EPYC 7551 32-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
processor\t: 1
model name\t: AMD EPYC 7551 32-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
"""
SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_int8 amx_tile
"""


def test_isa_detection_on_constructed_cpuinfo():
    zen = cpu_profile(ZEN1)
    assert (zen.model, zen.cores, zen.flags) == ("AMD EPYC 7551 32-Core Processor", 2, ("avx2", "fma"))
    assert not zen.native_bf16 and not zen.native_int8 and zen.vector_isa == "AVX2"
    assert zen.int8_kernels and zen.int8_reduce_range  # AVX2's byte multiply-add: int8 with 7-bit weights
    xeon = cpu_profile(SAPPHIRE)
    assert xeon.native_bf16 and xeon.native_int8 and xeon.vector_isa == "AVX-512"
    assert xeon.int8_kernels and not xeon.int8_reduce_range
    old = cpu_profile("processor\t: 0\nmodel name\t: old\nflags\t\t: fpu sse sse2 avx\n")
    assert not old.int8_kernels and not old.int8_reduce_range and old.vector_isa == "SSE"
    assert xeon.describe() == "Intel(R) Xeon(R) Platinum 8480+, 1 cores (avx2, fma, avx512f, avx512_bf16, avx512_vnni, amx_bf16, amx_int8, amx_tile)"
    assert cpu_profile("").model == "unknown CPU"


def test_bf16_on_a_cpu_without_it_runs_fp32(monkeypatch, tmp_path, caplog):
    """motionlab-animate precision=bf16 on a CPU without native bf16 says so and runs fp32 (where bf16 is slower)."""
    import numpy as np
    import torch
    from PIL import Image

    import motionlab.utils.machine as machine
    from motionlab.data.video_io import write_video
    from motionlab.inference.animate import animate_files
    from motionlab.models import create_model

    monkeypatch.setattr(machine, "cpu_profile", lambda cpuinfo=None: cpu_profile(ZEN1))
    net = create_model("animator_v1", motion_channels=(8, 16), appearance_channels=(8, 16), num_res_blocks=1)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "motionlab": {"task": "animator", "models": {"net": net.model_info.spec()}}}, tmp_path / "tiny.ckpt")
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "p.png")
    write_video(tmp_path / "d.mp4", [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(2)], fps=25)
    summary = animate_files(tmp_path / "tiny.ckpt", tmp_path / "p.png", tmp_path / "d.mp4", tmp_path / "o.mp4", precision="bf16")
    assert summary["precision"] == "fp32" and "has no bfloat16 arithmetic" in caplog.text


def test_seconds_since_launch_counts_from_the_process_start():
    """The launch-to-first-frame clock: a process that sleeps 0.5 s after starting reads at least that."""
    import subprocess
    import sys

    probe = "import time; time.sleep(0.5); from motionlab.utils.machine import seconds_since_launch; print(seconds_since_launch())"
    seconds = float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60).stdout)
    assert 0.45 <= seconds < 60
