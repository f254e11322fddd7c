"""LightningModules (one per task) and the predictors that run their networks at inference."""

from motionlab.tasks import adapter, animator, descriptor, lipsync, liveportrait, wav2lip  # noqa: F401  (registers every predictor)
from motionlab.tasks.predictor import AnimationPredictor, Predictor, load_predictor, predictor_from_checkpoint

__all__ = ["AnimationPredictor", "Predictor", "load_predictor", "predictor_from_checkpoint"]
