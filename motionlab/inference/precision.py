"""Reduced precision behind a fidelity gate: a mode runs only where the CPU computes it in SIMD and where its output
stays within a PSNR floor of fp32's on the run's own first frames (motionlab-lipsync ``precision=``)."""

from __future__ import annotations

import numpy as np

from motionlab.utils.errors import InputError


def unsupported(precision: str) -> str | None:
    """Why this CPU runs ``precision`` (bf16 / int8) no faster than fp32, or None where it computes it in SIMD: bf16
    only with native bfloat16 arithmetic (emulated, it ran at 2 % of fp32 on a Zen CPU), int8 with VNNI / AMX or with
    AVX2 (7-bit weights there: :attr:`~motionlab.utils.machine.CpuProfile.int8_reduce_range`)."""
    from motionlab.utils.machine import cpu_profile

    cpu = cpu_profile()
    if (cpu.int8_kernels if precision == "int8" else cpu.native_bf16):
        return None
    missing = "int8 SIMD kernels (VNNI / AMX or AVX2)" if precision == "int8" else "bfloat16 arithmetic (AVX512-BF16 / AMX)"
    return f"this CPU ({cpu.describe()}) has no {missing}, where {precision} is slower than fp32; running fp32"


def checked_psnr(precision: str, reference: list[np.ndarray], candidate: list[np.ndarray], floor_db: float, force: bool, region: str) -> float:
    """PSNR (dB, values in [0, 1], clipped) of ``candidate`` against the fp32 ``reference`` outputs of the same inputs; an
    error below ``floor_db`` unless ``force`` (``region`` names what was compared, for the message)."""
    error = np.mean([np.mean((ref.clip(0, 1) - out.clip(0, 1)) ** 2) for ref, out in zip(reference, candidate)])
    psnr = float(10 * np.log10(1.0 / max(float(error), 1e-12)))
    if psnr < floor_db and not force:
        raise InputError(f"precision={precision}: {region} is {psnr:.1f} dB from fp32's on this run's first {len(reference)} frames, below "
                         f"the {floor_db:g} dB floor (precision_floor_db); run precision=fp32, or precision_force=true")
    return psnr
