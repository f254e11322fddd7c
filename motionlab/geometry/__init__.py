"""Pure, differentiable geometry: dense flow (:mod:`.flow`), keypoints (:mod:`.keypoints`) and random warps
(:mod:`.transforms`). Each module's docstring states its convention (shapes, coordinate origin, ``align_corners``)."""

from motionlab.geometry.checks import check_shape
from motionlab.geometry.flow import (
    flow_at,
    identity_grid,
    keypoints_to_flow_coordinates,
    resize_flow,
    total_variation,
    warp,
)
from motionlab.geometry.keypoints import (
    HeadPose,
    Keypoints,
    coordinate_grid,
    heatmap_to_keypoints,
    keypoints_to_gaussian,
    movement_scale,
    relative_motion,
    sparse_motions,
)
from motionlab.geometry.transforms import RandomAffineTPS

__all__ = [
    "HeadPose", "Keypoints", "RandomAffineTPS", "check_shape", "coordinate_grid", "flow_at", "heatmap_to_keypoints", "identity_grid",
    "keypoints_to_flow_coordinates", "keypoints_to_gaussian", "movement_scale", "relative_motion", "resize_flow", "sparse_motions", "total_variation", "warp",
]
