"""Hydra configs, shipped inside the package as ``motionlab.conf`` (motionlab/conf links here)."""
