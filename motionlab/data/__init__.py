"""Data: the toy world, clip datasets and datamodules, talking-head preprocessing, audio features, caches."""

from motionlab.data import toy_human  # noqa: F401  (registers the toy world's "human" renderer)

# What a checkpoint's stored data config may build when an evaluation rebuilds its test split
# (motionlab.utils.config.instantiate_trusted refuses any other _target_).
TRUSTED_DATA_TARGETS = (
    "motionlab.data.datamodule.PortraitVideoDataModule",
    "motionlab.data.datamodule.TargetDataModule",
    "motionlab.data.lipsync.LipSyncDataModule",
    "motionlab.data.cross_domain.CrossDomainDataModule",
    "motionlab.data.augment.PairedAugmentation",
)
