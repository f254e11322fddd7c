"""Plain ``nn.Module`` architectures; importing this package registers them by name."""

from motionlab.models import animator, fomm, lipsync  # noqa: F401  (registers every architecture)
from motionlab.models.registry import create_model, list_models, model_class, register_model

__all__ = ["create_model", "list_models", "model_class", "register_model"]
