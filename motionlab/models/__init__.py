"""Networks and the one door from a name or a checkpoint to a ready network (:mod:`motionlab.models.builder`).

Importing this package registers every variant (:func:`list_models`): ``animator_v1``, ``fomm_vox256`` ...,
``tpsmm_{vox256,taichi256,mgif256,ted384}``, ``lipsync_unet328_{ave,hubert,wenet}``, ``syncnet328_{ave,hubert,wenet}``,
``lipsync_audio_encoder_ave``, ``lipsync_av_encoder``, ``landmark_adapter_{mlp,temporal}``, ``descriptor_to_landmarks_mlp``,
``liveportrait``, ``wav2lip96``, ``syncnet_wav2lip``, ``s3fd``, ``musetalk_v15``.
"""

from motionlab.models import adapter, animator, fomm, lipsync, liveportrait, musetalk, tpsmm, wav2lip  # noqa: F401  (registers every variant)
from motionlab.models.builder import (
    CheckpointFormatError,
    checkpoint_models,
    create_model,
    freeze,
    from_pretrained,
    load_model,
    load_pretrained,
    model_from_spec,
    motionlab_meta,
    stored_models,
)
from motionlab.models.registry import ExportGraph, ModelInfo, list_models, model_builder, model_graphs, register_model

__all__ = [
    "CheckpointFormatError", "ExportGraph", "ModelInfo", "checkpoint_models", "create_model", "freeze", "from_pretrained", "list_models", "load_model", "load_pretrained",
    "model_builder", "model_from_spec", "model_graphs", "motionlab_meta", "register_model", "stored_models",
]
