"""motionlab: portrait animation and lip-sync experiments on PyTorch Lightning + Hydra."""

import os as _os

from omegaconf import OmegaConf as _OmegaConf

# ``${cwd:}``: the working directory, for paths.root_dir. ``${hydra:runtime.cwd}`` cannot be used there: a multirun
# sweeper resolves hydra.sweep.dir (under paths.log_dir) before Hydra has set its runtime config.
_OmegaConf.register_new_resolver("cwd", _os.getcwd, replace=True)
# ``${pid:}``: the process id, which keeps run folders of runs started in the same second apart.
_OmegaConf.register_new_resolver("pid", _os.getpid, replace=True)
