"""motionlab: portrait animation and lip-sync experiments on PyTorch Lightning + Hydra."""

import hashlib as _hashlib
import os as _os
import time as _time
from importlib.metadata import version as _version

from omegaconf import OmegaConf as _OmegaConf

# the installed distribution's version (pyproject.toml), recorded with runs and checkpoints
__version__ = _version("motionlab")


def run_folder_name(run_name: str | None) -> str:
    """The name of a run's (or a sweep's) folder: ``run_name`` when given; else the SLURM job (every task of it, and
    the job again after a requeue, shares one folder) or the torchrun rendezvous (every rank of it), else the start
    time and process id."""
    if run_name:
        return str(run_name)
    if _os.environ.get("SLURM_JOB_ID"):
        return f"slurm_{_os.environ['SLURM_JOB_ID']}"
    if _os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return f"torchrun_{_os.environ['TORCHELASTIC_RUN_ID']}"
    return f"{_time.strftime('%Y-%m-%d_%H-%M-%S')}_{_os.getpid()}"


def wandb_run_id(output_dir: str) -> str:
    """A W&B run id derived from the run folder: a resumed run (same folder) continues its W&B run."""
    return _hashlib.sha1(_os.path.abspath(output_dir).encode()).hexdigest()[:16]


# ``${cwd:}``: the working directory, for paths.root_dir. ``${hydra:runtime.cwd}`` cannot be used there: a multirun
# sweeper resolves hydra.sweep.dir (under paths.log_dir) before Hydra has set its runtime config.
_OmegaConf.register_new_resolver("cwd", _os.getcwd, replace=True)
# ``${run_folder:${oc.select:run_name,null}}``: run folder names (conf/hydra/default.yaml). Cached, as Hydra's
# ``now``: the jobs of a sweep copy the sweep's resolver cache, and so share its folder.
_OmegaConf.register_new_resolver("run_folder", run_folder_name, replace=True, use_cache=True)
# ``${run_id:${paths.output_dir}}``: W&B run ids (conf/logger/wandb.yaml)
_OmegaConf.register_new_resolver("run_id", wandb_run_id, replace=True)
