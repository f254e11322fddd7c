"""What the CPU at hand can compute natively, read from ``/proc/cpuinfo``: its model, its vector ISA (AVX2, AVX-512),
and whether bfloat16 and int8 dot products run in hardware (AVX512-BF16 / AMX-BF16; AVX512-VNNI / AVX-VNNI / AMX-INT8).
Benchmarks record it beside every table; reduced-precision modes say when the machine lacks them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# the flags that matter for the hot paths, in the order they are reported
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


@dataclass(frozen=True)
class CpuProfile:
    """The CPU's ``model`` name, its ``cores`` (logical processors listed) and which :data:`ISA_FLAGS` it has."""

    model: str
    cores: int
    flags: tuple[str, ...]

    @property
    def native_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & set(self.flags))

    @property
    def native_int8(self) -> bool:
        """int8 dot products in one instruction (VNNI / AMX), which accumulate 8-bit weights at their full range."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(self.flags))

    @property
    def int8_reduce_range(self) -> bool:
        """int8 runs through AVX2's byte multiply-add (VPMADDUBSW), whose pairwise 16-bit sums saturate with full-range
        weights: onnxruntime's quantizer is told to keep weights to 7 bits (its ``reduce_range``, as its documentation
        advises for CPUs without VNNI). Measured on a Zen AVX2 CPU, the int8 lip-sync U-Net still runs 1.5x its fp32
        graph: the network is memory-bound, and int8 moves a quarter of the bytes."""
        return "avx2" in self.flags and not self.native_int8

    @property
    def int8_kernels(self) -> bool:
        """Whether onnxruntime's int8 convolutions run in SIMD here (VNNI / AMX, or AVX2 with 7-bit weights)."""
        return self.native_int8 or self.int8_reduce_range

    @property
    def vector_isa(self) -> str:
        return "AVX-512" if "avx512f" in self.flags else "AVX2" if "avx2" in self.flags else "SSE"

    def describe(self) -> str:
        """One line for a benchmark table: model, cores, ISA flags."""
        return f"{self.model}, {self.cores} cores ({', '.join(self.flags) or 'no AVX'})"


def cpu_profile(cpuinfo: str | None = None) -> CpuProfile:
    """The profile of ``cpuinfo`` (the text of ``/proc/cpuinfo``; read from the machine when None, an unknown CPU where
    there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, cores, flags = "unknown CPU", 0, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            cores += 1
        elif key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return CpuProfile(model, cores, tuple(flag for flag in ISA_FLAGS if flag in flags))


def seconds_since_launch() -> float | None:
    """Seconds since this process was started (the interpreter's own start-up included), from ``/proc/self/stat``'s
    start time and ``/proc/uptime``; None where /proc does not say (not Linux)."""
    import os

    try:
        # the process name (field 2) may hold spaces: the fields after its closing parenthesis, start time the 20th
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
