"""The data contracts: what each dataset's samples hold (collated into batches by the DataLoader), key by key.

Convention (every batch kind here):
    images are float32 (3, H, W) per sample, (B, 3, H, W) per batch, RGB in [0, 1] (the image conversion of
    :mod:`motionlab.data.video_io` / :func:`motionlab.data.datasets.frames_to_tensor`: uint8 / 255, resized to the
    data's ``image_size``). Points (keypoints, landmarks) are float32 in **pixels of the served image**, x first, origin
    at the top-left corner of the top-left pixel; descriptors (a descriptor model's keypoints) are in its normalised
    [-1, 1] coordinates (``align_corners=False``). The roles of a clip are the **portrait** (the image animated) and
    the **driver** (the frame whose motion drives it); FOMM's and LivePortrait's own code call the portrait the source.
    ``identity`` / indices are plain Python values (lists after collation). Keys marked ``NotRequired`` appear only
    where the data carries them (ground truth, cached descriptors, face labels).

Every string key a batch is indexed with in ``motionlab/`` is declared here (``tests/data/test_batches.py`` checks it).
"""

# no `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations
from typing import NotRequired, TypedDict

from torch import Tensor


class AnimationBatch(TypedDict):
    """:class:`motionlab.data.datasets.PortraitVideoDataset`: a portrait and a driver frame with its neighbour."""

    portrait: Tensor  # (3, H, W) the portrait (or a frame of the clip when the layout has no portrait image)
    driver: Tensor  # (3, H, W) driver frame t
    driver_next: Tensor  # (3, H, W) a neighbouring frame of t (temporal terms)
    identity: str
    frame_index: int  # t
    next_index: int
    portrait_index: int  # the portrait's frame in the clip; -1 for a separate portrait image
    driver_descriptors: NotRequired[Tensor]  # (K, 2) cached descriptors of frame t (data.descriptor_ckpt)
    driver_next_descriptors: NotRequired[Tensor]
    portrait_descriptors: NotRequired[Tensor]
    driver_descriptor_jacobians: NotRequired[Tensor]  # (K, 2, 2)
    driver_next_descriptor_jacobians: NotRequired[Tensor]
    portrait_descriptor_jacobians: NotRequired[Tensor]
    driver_keypoints: NotRequired[Tensor]  # (P, 2) ground-truth named points, pixels (toy world)
    portrait_keypoints: NotRequired[Tensor]
    driver_landmarks: NotRequired[Tensor]  # (68, 2) dlib-order landmarks, pixels (data.face_labels)
    driver_head_pose: NotRequired[Tensor]  # (3,) pitch, yaw, roll in degrees (data.face_labels)


class RetargetingBatch(TypedDict):
    """:class:`motionlab.data.retargeting.RetargetingPairs`: a portrait and itself with only its eyes or lips changed
    (LivePortrait's stage 2)."""

    portrait: Tensor  # (3, H, W) the portrait at rest
    target: Tensor  # (3, H, W) the same character with the part changed
    ratios: Tensor  # the openness ratios: the portrait's, then the target's
    identity: str


class AdapterBatch(TypedDict):
    """:class:`motionlab.data.cross_domain.CrossDomainDataset`: human landmarks and the cartoon's descriptors."""

    landmarks_prev: Tensor  # (W, 68, 2) a window of normalised landmarks relative to the reference frame, at t - 1
    landmarks: Tensor  # (W, 68, 2) at t
    landmarks_next: Tensor  # (W, 68, 2) at t + 1
    reference_landmarks: Tensor  # (68, 2) the reference frame's normalised landmarks (face frame, eye distance 1)
    descriptor_delta: Tensor  # (K, 2) the cartoon's descriptors at t minus at its reference
    descriptor_window: Tensor  # (W, K, 2)
    reference_descriptors: Tensor  # (K, 2)
    identity: str
    frame_index: int
    reference_index: int
    jacobian_ratio: NotRequired[Tensor]  # (K, 2, 2) J_t J_ref^-1
    portrait: NotRequired[Tensor]  # (3, H, W) the cartoon's reference frame (with_images)
    driver: NotRequired[Tensor]  # (3, H, W) the cartoon's frame t
    descriptors: NotRequired[Tensor]  # (K, 2) the cartoon's descriptors at t
    reference_jacobians: NotRequired[Tensor]  # (K, 2, 2)


class LipSyncBatch(TypedDict):
    """:class:`motionlab.data.lipsync.LipSyncDataset`: a face crop, a reference crop and the audio around it."""

    face: Tensor  # (3, 328, 328) the frame's face crop, in the clip's convention's channel order, [0, 1]
    reference: Tensor  # (3, 328, 328) another frame's crop
    mel: Tensor  # (1, 80, 16) the mel window of the frame
    mel_offsync: Tensor  # (1, 80, 16) a window far from it (SyncNet negatives)
    clip: int
    frame: int
    audio: NotRequired[Tensor]  # the U-Net's audio input (ave: (32, 16, 16)) from the clip's features
    audio_offsync: NotRequired[Tensor]


class Wav2LipBatch(TypedDict):
    """:class:`motionlab.data.lipsync.Wav2LipDataset`: a window of 5 consecutive face crops and their audio, in Wav2Lip's
    conventions (96 px, BGR, [0, 1])."""

    faces: Tensor  # (5, 3, 96, 96) the window's crops (the targets)
    reference: Tensor  # (5, 3, 96, 96) another window of the clip (the generator's identity input)
    mels: Tensor  # (5, 1, 80, 16) each frame's mel window
    sync_mel: Tensor  # (1, 80, 16) the window's own 0.2 s of audio (the expert SyncNet's input)
    clip: int
    frame: int  # the window's first frame


class MuseTalkBatch(TypedDict):
    """:class:`motionlab.data.lipsync.MuseTalkDataset`: a window of T consecutive frames (1 in stage 1): face crops by
    MuseTalk's box rule, a reference frame of the clip for each, and the Whisper input their audio context is read from
    (MuseTalk's conventions: 256 px, RGB, [-1, 1])."""

    face: Tensor  # (T, 3, 256, 256) the frames' crops (the targets; their upper halves are the masked input)
    reference: Tensor  # (T, 3, 256, 256) another frame's crop for each (the identity input)
    mouth_box: Tensor  # (T, 4) int64 x0, y0, x1, y1 of MuseTalk's mouth box in each crop (the mouth critic's view)
    whisper_mel: Tensor  # (80, 3000) the Whisper log-mel of the 30-s window holding the frames
    audio_start: Tensor  # (T,) int64 where each frame's context starts in that window's padded hidden states (models.musetalk.window_start)
    audio_frames: int  # Whisper frames of real audio in that window (the rest is zeroed, as at inference)
    sync_mel: Tensor  # (1, 80, 16) the first frame's mel window (an expert SyncNet's audio input for 5-frame windows)
    clip: int
    frame: int  # the window's first frame


class AnimationOutput(TypedDict):
    """What an animation predictor returns for a batch of driver frames (:class:`motionlab.tasks.AnimationPredictor`)."""

    generated: Tensor  # (N, 3, S', S') in [0, 1]
    driver_keypoints: NotRequired[object]  # Keypoints of the driver frames
    generated_keypoints: NotRequired[object]  # Keypoints of the generated frames (or an adapter's adapted keypoints)
    portrait_context: NotRequired[dict]  # what preparing the portrait learnt (LivePortrait: its face crop), for finish
    crops: NotRequired[list]  # video-to-video: each source frame's face crop (PortraitCrop), for finish_source_video
