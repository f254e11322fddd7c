"""LightningModules (one per task, in ``motionlab.tasks.<task>``) and the predictors that run their networks at
inference (``motionlab.tasks.<task>_predictor``: importable without Lightning or torchmetrics, so commands that only
run a model start in the time torch takes to import)."""

from motionlab.tasks import (  # noqa: F401  (registers every predictor)
    adapter_predictor,
    animator_predictor,
    descriptor_predictor,
    lipsync_predictor,
    liveportrait_predictor,
    musetalk_predictor,
    wav2lip_predictor,
)
from motionlab.tasks.predictor import AnimationPredictor, Predictor, load_predictor, predictor_from_checkpoint

__all__ = ["AnimationPredictor", "Predictor", "load_predictor", "predictor_from_checkpoint"]
