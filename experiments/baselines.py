"""``make baselines``: rerun every baseline at ci scale with seeds 1, 2, 3 and rebuild experiments/RESULTS.csv / .md.

    python -m experiments.baselines [--seeds 1 2 3] [--only NAME ...] [--jobs 2] [--out experiments] [-- OVERRIDE ...]

Each run is ``motionlab-train experiment=baseline/<name>_ci seed=S`` in its own process, on one CPU thread (so its
numbers do not depend on how many runs share the machine), under ``logs/baseline_<name>/runs/<invocation>_s<S>``.
Runs that need another baseline's checkpoint (the descriptor Animator, the adapter, the lip-sync stages) take that of
the same seed. RESULTS.csv and RESULTS.md (per baseline and metric: mean ± std over seeds, every seed's value; git commit, command,
machine) are ``motionlab-eval table layout=long`` over the runs' metafile.json, written atomically. Extra Hydra overrides after ``--`` go to every run (the test uses them to shrink the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Baseline:
    name: str
    # the metrics RESULTS reports, in order
    metrics: tuple[str, ...]
    # override key -> the baseline (same seed) whose last.ckpt it takes
    inputs: dict[str, str] = field(default_factory=dict)


# in dependency order: a baseline's inputs come before it
BASELINES = [
    Baseline("animator_v1", ("val/l1", "val/l1_ratio_to_copy", "val/psnr", "val/ssim")),
    Baseline("descriptor", ("test/kp_to_gt_error_pct", "test/akd", "test/l1")),
    Baseline("descriptor_animator", ("val/l1", "val/l1_ratio_to_copy", "val/psnr"), {"model.descriptor_model.ckpt": "descriptor"}),
    Baseline("adapter", ("test/kp_error_pct", "test/kp_error_pct_affine", "test/l1", "test/l1_affine"), {"data.descriptor_ckpt": "descriptor"}),
    Baseline("lipsync_av", ("val/sync_acc", "val/loss")),
    Baseline("lipsync_syncnet", ("val/sync_acc", "val/loss"), {"data.audio_encoder_ckpt": "lipsync_av"}),
    Baseline("lipsync_unet", ("val/mouth_l1", "val/mouth_l1_reference", "val/sync_prob"),
             {"data.audio_encoder_ckpt": "lipsync_av", "model.syncnet.ckpt": "lipsync_syncnet"}),
]


def _chains(chosen: list[Baseline]) -> list[list[Baseline]]:
    """Baselines grouped so that each group runs in order and groups are independent."""
    chains: list[list[Baseline]] = []
    for baseline in chosen:
        home = next((c for c in chains if any(b.name in baseline.inputs.values() for b in c)), None)
        if home is None:
            chains.append([baseline])
        else:
            home.append(baseline)
    return chains


def _run(baseline: Baseline, seed: int, invocation: str, root: Path, extra: list[str]) -> Path:
    """Train one baseline for one seed; returns its run folder."""
    run_name = f"{invocation}_s{seed}"
    inputs = [f"{key}={root / 'logs' / f'baseline_{source}' / 'runs' / run_name / 'checkpoints' / 'last.ckpt'}"
              for key, source in baseline.inputs.items()]
    command = [str(Path(sys.executable).with_name("motionlab-train")), f"experiment=baseline/{baseline.name}_ci", f"seed={seed}",
               f"run_name={run_name}", "logger=csv", f"paths.root_dir={root}", *inputs, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    if result.returncode != 0:
        raise RuntimeError(f"baseline {baseline.name} seed {seed} failed ({' '.join(command)}):\n{result.stderr[-3000:]}")
    print(f"  {baseline.name:<20} seed {seed}: {time.perf_counter() - started:6.1f} s", flush=True)
    return root / "logs" / f"baseline_{baseline.name}" / "runs" / run_name


def _machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}"


def _commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return (result.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def write_results(runs: dict[tuple[str, int], Path], chosen: list[Baseline], seeds: list[int], out: Path, command: str, seconds: float) -> Path:
    """RESULTS.csv and RESULTS.md: ``motionlab-eval table layout=long`` over the runs' metafiles (per baseline and
    metric: mean, std over seeds, every seed's value, device-hours), under a header saying what these rows are."""
    from motionlab.inference.metafile import METAFILE, metafile_table

    for baseline in chosen:
        for seed in seeds:
            recorded = json.loads((runs[baseline.name, seed] / METAFILE).read_text())["metrics"]
            missing = [metric for metric in baseline.metrics if metric not in recorded]
            if missing:
                raise KeyError(f"baseline {baseline.name} seed {seed}: {', '.join(missing)} not in {runs[baseline.name, seed] / METAFILE}")
    preamble = [
        "# Baselines (ci scale): toy sentinels", "",
        "Every row is a **toy sentinel**: a model trained here on the embedded toy world (CPU, minutes per run). The rows",
        "catch regressions and show seed spread; they are not paper-scale results (conf/experiment/baseline/*_paper.yaml,",
        "experiments/README.md) and no number here is comparable to a paper's (the dagger says so, with the reason).",
        "Rebuilt by `make baselines` with `motionlab-eval table layout=long` from the runs' metafile.json; RESULTS.csv",
        "beside this file holds the same numbers.", "",
        f"- commit: `{_commit()}`", f"- command: `{command}`", f"- machine: {_machine()} (each run on one thread)",
        f"- wall time: {seconds / 60:.1f} min for {len(chosen)} baselines x {len(seeds)} seeds", "",
    ]
    wanted = sorted({metric for baseline in chosen for metric in baseline.metrics})
    report = metafile_table([runs[baseline.name, seed] for baseline in chosen for seed in seeds], out / "RESULTS", "long", wanted, preamble)
    return Path(report["csv"])


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BASELINES], help="these baselines (and what they need)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each on one thread)")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments", help="where RESULTS.csv / .md go")
    parser.add_argument("--root", type=Path, default=ROOT, help="paths.root_dir of the runs (logs/ and .cache/ under it)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    wanted = set(args.only or [b.name for b in BASELINES])
    for baseline in reversed(BASELINES):  # what the chosen ones need comes along
        if baseline.name in wanted:
            wanted |= set(baseline.inputs.values())
    chosen = [b for b in BASELINES if b.name in wanted]
    args.root.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    invocation = time.strftime("%Y-%m-%d_%H-%M-%S")
    command = "make baselines" if argv == [] else f"python -m experiments.baselines {' '.join(argv)}"
    print(f"baselines {', '.join(b.name for b in chosen)} x seeds {args.seeds}, {args.jobs} at once", flush=True)
    started = time.perf_counter()
    runs: dict[tuple[str, int], Path] = {}

    def run_chain(chain: list[Baseline], seed: int) -> None:
        for baseline in chain:
            runs[baseline.name, seed] = _run(baseline, seed, invocation, args.root, extra)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_chain, chain, seed) for seed in args.seeds for chain in _chains(chosen)]
        for future in futures:
            future.result()
    csv_path = write_results(runs, chosen, args.seeds, args.out, command, time.perf_counter() - started)
    print(f"wrote {csv_path} and {csv_path.with_suffix('.md').name} in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
