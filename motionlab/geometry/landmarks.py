"""Facial landmarks: the 68-point iBUG-300W layout, normalisation into a face frame, and motion signals.

Convention (every function here):
    landmarks are numpy arrays (T, P, 2), x first, in pixels of the frame they were found on (x right, y down,
    origin at the top-left pixel's centre) or in any similar units; P is 68 (dlib / iBUG-300W order) or 110
    (SyncTalk_2D's ``.lms``). "Left" and "right" are image-left and image-right. A face frame is a similarity
    transform (translation, uniform scale, rotation); no resampling, so there is no ``align_corners`` question.
"""

from __future__ import annotations

import numpy as np

# iBUG-300W 68-point layout (dlib's shape_predictor_68_face_landmarks order).
IBUG68 = {
    "jaw": slice(0, 17),
    "left_brow": slice(17, 22),
    "right_brow": slice(22, 27),
    "nose_bridge": slice(27, 31),
    "nostrils": slice(31, 36),
    "left_eye": slice(36, 42),
    "right_eye": slice(42, 48),
    "outer_lips": slice(48, 60),
    "inner_lips": slice(60, 68),
}
# where each of the 68 points lands in a horizontally mirrored face (image-left and image-right parts swap;
# the midline's points stay): mirrored[i] = points[MIRROR_68[i]] with x reflected
MIRROR_68 = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
                      45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                      54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
                      64, 63, 62, 61, 60, 67, 66, 65])
# Points whose means anchor the face frame, per layout: the two eye centres for 68 points (the inter-ocular
# distance is the unit); for SyncTalk_2D's 110 points, whose eye indices are not published with the format, the
# jaw points at eye height that its crop rule uses (the face width is the unit there).
FRAME_ANCHORS = {68: (list(range(36, 42)), list(range(42, 48))), 110: ([1], [31])}
SIGNALS = ("mouth_opening", "eye_opening", "head_roll", "x", "y")


def _check_landmarks(points: np.ndarray, name: str = "landmarks", layouts=FRAME_ANCHORS) -> np.ndarray:
    """(T, P, 2) float64 points whose count P is one of ``layouts``, else a ValueError naming them."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"{name}: expected (T, P, 2) points, got shape {points.shape}")
    if points.shape[1] not in layouts:
        raise ValueError(f"{name}: {points.shape[1]} points per frame; known layouts: {', '.join(map(str, sorted(layouts)))} points")
    return points


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the anchor midpoint (T, 2), the anchor distance (T,) and the roll angle (T,) in radians (the
    angle of the left-to-right anchor line; positive turns from +x towards +y, i.e. clockwise on screen)."""
    points = _check_landmarks(points)
    left_ids, right_ids = FRAME_ANCHORS[points.shape[1]]
    left, right = points[:, left_ids].mean(axis=1), points[:, right_ids].mean(axis=1)
    axis = right - left
    return (left + right) / 2.0, np.linalg.norm(axis, axis=-1), np.arctan2(axis[:, 1], axis[:, 0])


def normalize_landmarks(points: np.ndarray, reference: int = 0) -> np.ndarray:
    """Landmarks in the face frame of frame ``reference``: centred on its anchor midpoint, divided by its anchor
    distance (the inter-ocular distance for 68 points) and rotated so its eye line is horizontal.

    One transform for the whole clip, so motion relative to the reference frame (head translation, roll, scale,
    expressions) survives while where the face sits in the picture, how big it is and the camera's roll do not:
    a translated, scaled or rolled copy of a clip normalises to the same output.
    """
    points = _check_landmarks(points)
    centre, distance, roll = (value[0] for value in face_frame(points[reference : reference + 1]))
    if distance <= 1e-6:
        raise ValueError(f"landmarks: the face-frame anchors of reference frame {reference} coincide; cannot normalise")
    c, s = np.cos(-roll), np.sin(-roll)
    unroll = np.array([[c, -s], [s, c]])
    return ((points - centre) @ unroll.T / distance).astype(np.float32)


def motion_signals(points: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame motion signals of a 68-point clip, each (T,), measured in the first frame's face frame.

    ``mouth_opening``: mean gap between the inner lips (61-67, 62-66, 63-65) over the inter-ocular distance;
    ``eye_opening``: mean gap between the eyelids (37-41, 38-40, 43-47, 44-46) over it (gaps are signed: the lower
    point's offset from the upper one along the face's downward axis, so lips or lids that a noisy estimate crosses read
    as a little below closed rather than folding back into "open"); ``head_roll``: the eye
    line's angle (radians) relative to the first frame; ``x`` / ``y``: the eye midpoint's displacement from the
    first frame's, in first-frame inter-ocular distances.
    """
    points = _check_landmarks(points)
    if points.shape[1] != 68:
        raise ValueError(f"motion signals are defined on the 68-point layout, got {points.shape[1]} points")
    normalised = normalize_landmarks(points)
    _, distance, roll = face_frame(normalised)

    down = np.stack([-np.sin(roll), np.cos(roll)], axis=-1)  # (T, 2): the face's +y axis in each frame

    def gap(pairs: list[tuple[int, int]]) -> np.ndarray:
        return np.mean([((normalised[:, lower] - normalised[:, upper]) * down).sum(-1) for upper, lower in pairs], axis=0) / distance

    centre = face_frame(normalised)[0]
    return {
        "mouth_opening": gap([(61, 67), (62, 66), (63, 65)]),
        "eye_opening": gap([(37, 41), (38, 40), (43, 47), (44, 46)]),
        "head_roll": np.unwrap(roll) - roll[0],
        "x": centre[:, 0] - centre[0, 0],
        "y": centre[:, 1] - centre[0, 1],
    }


def neutral_frame(points: np.ndarray, candidates: np.ndarray | None = None) -> int:
    """Index of the frame of a 68-point clip nearest a neutral, frontal face: among the ``candidates`` (a (T,) bool
    mask, e.g. the frames with a detected face; default all) whose eye opening is at least their median (no blink, no
    squint) and whose head pose is among the clip's more typical half (the shape of the jaw, nose and eye corners in
    each frame's own face frame, nearest the clip's median shape: turns and nods change it), the one whose inner lips
    are closest together.

    A portrait is usually neutral and frontal, so relative motion is best measured from such a driver frame: measured
    from a talking or wide-eyed first frame, most of the clip asks the portrait to close a mouth that is already closed,
    or to narrow its eyes throughout; measured from a turned head, every other frame reads as a turn (FOMM's demo
    chooses its reference frame for the same reasons).
    """
    points = _check_landmarks(points)
    signals = motion_signals(points)
    candidates = np.ones(len(points), bool) if candidates is None else np.asarray(candidates, bool)
    if candidates.shape != (len(points),) or not candidates.any():
        raise ValueError(f"neutral_frame: candidates must be a (T,) mask with at least one frame, got shape {candidates.shape}, {int(candidates.sum())} set")
    centre, distance, roll = face_frame(points)
    c, s = np.cos(-roll), np.sin(-roll)
    unroll = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (T, 2, 2)
    rigid = [*range(0, 17), *range(27, 36), 36, 39, 42, 45]
    own = np.einsum("tij,tpj->tpi", unroll, points[:, rigid] - centre[:, None]) / distance[:, None, None]
    pose_change = np.abs(own - np.median(own[candidates], axis=0)).mean(axis=(1, 2))
    eyes = signals["eye_opening"]
    # pose changes under 2 % of the inter-ocular distance are detector noise, not turns
    typical = candidates & (eyes >= np.median(eyes[candidates])) & (pose_change <= max(np.median(pose_change[candidates]), 0.02))
    index = np.flatnonzero(typical) if typical.any() else np.flatnonzero(candidates)
    return int(index[np.argmin(np.abs(signals["mouth_opening"][index]))])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (T,) signals; NaN when either is constant (no motion to agree on)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 1e-12 else float("nan")


def amplitude_ratio(reference: np.ndarray, other: np.ndarray) -> float:
    """Standard deviation of the (T,) signal ``other`` over that of ``reference``: how much of a motion comes through,
    which a correlation cannot tell (it is blind to scale); NaN when ``reference`` is constant."""
    reference_std = float(np.asarray(reference, np.float64).std())
    return float(np.asarray(other, np.float64).std()) / reference_std if reference_std > 1e-12 else float("nan")


def similarity_to(points: np.ndarray, reference: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the weighted least-squares similarity (rotation, uniform scale, translation; no reflection) taking the
    (K, 2) ``reference`` points to each frame of (T, K, 2) ``points``: ``points[t] ~ reference @ A[t].T + b[t]``.
    ``weights`` (K,), non-negative, default all equal. Returns ``A`` (T, 2, 2) and ``b`` (T, 2)."""
    weights = np.full(len(reference), 1.0 / len(reference)) if weights is None else weights / weights.sum()
    ref_centre, centres = weights @ reference, np.einsum("k,tkc->tc", weights, points)
    r, p = reference - ref_centre, points - centres[:, None]
    spread = (weights * (r**2).sum(-1)).sum()
    if spread <= 1e-12:
        raise ValueError("similarity_to: the reference keypoints all coincide, so no head motion can be fitted to them; "
                         "the descriptor model's keypoints have collapsed (check its training)")
    # a similarity without reflection is [[a, -c], [c, a]]: a and c in closed form (complex least squares)
    a = (weights * (r[None, :, 0] * p[..., 0] + r[None, :, 1] * p[..., 1])).sum(axis=1) / spread
    c = (weights * (r[None, :, 0] * p[..., 1] - r[None, :, 1] * p[..., 0])).sum(axis=1) / spread
    matrix = np.stack([np.stack([a, -c], -1), np.stack([c, a], -1)], axis=1)
    return matrix, centres - ref_centre @ matrix.transpose(0, 2, 1)


# The two points LivePortrait's cropper takes a face's vertical axis from (its parse_pt2_from_pt68 / 106 / 203): the
# eyes' centre (the mean of the two eye centres, each the mean of the listed points) and the lips' centre.
CROP_AXIS_POINTS = {
    68: {"eyes": ((36, 39), (42, 45)), "lips": (48, 54)},
    106: {"eyes": ((33, 35, 40, 39), (87, 89, 94, 93)), "lips": (52, 61)},
    203: {"eyes": ((0, 6, 12, 18), (24, 30, 36, 42)), "lips": (48, 66)},
}


def face_crop_matrix(points: np.ndarray, size: int, scale: float = 2.3, vx_ratio: float = 0.0, vy_ratio: float = -0.125,
                     rotate: bool = True) -> np.ndarray:
    """(2, 3) affine map from image pixels to a ``size`` x ``size`` face crop: LivePortrait's ``crop_image`` rule on one
    face's (68 | 106 | 203, 2) landmarks (dlib's, InsightFace's 2d106det or the release's 203-point model).

    Convention: pixel coordinates, x right, y down, origin at the top-left pixel, as ``cv2.warpAffine`` takes them.
    The crop's vertical axis runs from the eyes' centre to the lips' (:data:`CROP_AXIS_POINTS`), so the face is upright
    in it (``rotate=False`` keeps the image's axes); its side is ``scale`` times the larger extent of all landmarks in
    that frame, centred on their box and shifted by ``vx_ratio`` / ``vy_ratio`` of the side (-0.125: upwards, leaving
    room for the forehead). The release crops portraits at scale 2.3, vy -0.125 on InsightFace's 106 points, and the
    203-point model's input at scale 1.5, vy -0.1.
    """
    centre, side, frame = face_crop_square(points, scale, vx_ratio, vy_ratio)
    axes = (frame if rotate else np.eye(2)) * (size / side)
    return np.concatenate([axes, (size / 2.0 - axes @ centre)[:, None]], axis=1).astype(np.float64)


def face_crop_square(points: np.ndarray, scale: float = 2.3, vx_ratio: float = 0.0, vy_ratio: float = -0.125) -> tuple[np.ndarray, float, np.ndarray]:
    """The face's crop square by LivePortrait's rule (its ``parse_rect_from_landmark``): (2,) centre and side in
    pixels, and the (2, 2) upright frame (rows: the face's right and down axes). See :func:`face_crop_matrix`."""
    points = _check_landmarks(points[None], "face crop landmarks", CROP_AXIS_POINTS)[0]
    layout = CROP_AXIS_POINTS[points.shape[0]]
    eyes = np.mean([points[list(eye)].mean(axis=0) for eye in layout["eyes"]], axis=0)
    lips = points[list(layout["lips"])].mean(axis=0)
    down = lips - eyes
    length = np.linalg.norm(down)
    down = down / length if length > 1e-3 else np.array([0.0, 1.0])
    right = np.array([down[1], -down[0]])
    frame = np.stack([right, down])
    rotated = (points - points.mean(axis=0)) @ frame.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    side = float((high - low).max()) * scale
    middle = (low + high) / 2.0
    centre = points.mean(axis=0) + right * (middle[0] + vx_ratio * side) + down * (middle[1] + vy_ratio * side)
    return centre, side, frame


def release_eye_ratios(points: np.ndarray) -> np.ndarray:
    """(T, 2) eye openness of (T, 203, 2) landmarks as LivePortrait computes it (``calc_eye_close_ratio``): for each eye
    the distance of points 6-18 (30-42) over that of 0-12 (24-36), plus 1e-6."""
    points = _check_landmarks(points, "203-point landmarks", (203,))

    def ratio(a: int, b: int, c: int, d: int) -> np.ndarray:
        return np.linalg.norm(points[:, a] - points[:, b], axis=-1) / (np.linalg.norm(points[:, c] - points[:, d], axis=-1) + 1e-6)

    return np.stack([ratio(6, 18, 0, 12), ratio(30, 42, 24, 36)], axis=1).astype(np.float32)


def release_lip_ratio(points: np.ndarray) -> np.ndarray:
    """(T,) lip openness of (T, 203, 2) landmarks as LivePortrait computes it (``calc_lip_close_ratio``): the distance of
    points 90-102 over that of 48-66, plus 1e-6."""
    points = _check_landmarks(points, "203-point landmarks", (203,))
    return (np.linalg.norm(points[:, 90] - points[:, 102], axis=-1) / (np.linalg.norm(points[:, 48] - points[:, 66], axis=-1) + 1e-6)).astype(np.float32)


def eye_openness(points: np.ndarray) -> np.ndarray:
    """(T, 2) openness of the image-left and image-right eye: mean eyelid gap (37-41, 38-40 / 43-47, 44-46) over
    the eye's width (36-39 / 42-45). LivePortrait's ratios come from its 203-point model; these are dlib's analogue."""
    points = _check_landmarks(points)

    def ratio(pairs, corners):
        gap = np.mean([np.linalg.norm(points[:, a] - points[:, b], axis=-1) for a, b in pairs], axis=0)
        return gap / np.maximum(np.linalg.norm(points[:, corners[0]] - points[:, corners[1]], axis=-1), 1e-6)

    return np.stack([ratio([(37, 41), (38, 40)], (36, 39)), ratio([(43, 47), (44, 46)], (42, 45))], axis=1).astype(np.float32)


def lip_openness(points: np.ndarray) -> np.ndarray:
    """(T,) mouth openness: the inner lips' gap (62-66) over the mouth's width (48-54) (dlib's analogue of
    LivePortrait's 203-point lip ratio)."""
    points = _check_landmarks(points)
    width = np.maximum(np.linalg.norm(points[:, 48] - points[:, 54], axis=-1), 1e-6)
    return (np.linalg.norm(points[:, 62] - points[:, 66], axis=-1) / width).astype(np.float32)


# A generic 3-D face (millimetres) at six of the 68 points, in camera-like axes (x right, y down, z away from the
# camera; the nose tip at the origin): nose tip 30, chin 8, outer eye corners 36 / 45, mouth corners 48 / 54.
POSE_MODEL_POINTS = (30, 8, 36, 45, 48, 54)
POSE_MODEL = np.array([(0.0, 0.0, 0.0), (0.0, 330.0, 65.0), (-225.0, -170.0, 135.0), (225.0, -170.0, 135.0),
                       (-150.0, 150.0, 125.0), (150.0, 150.0, 125.0)])


def rotation_to_angles(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) ``R = Rz(roll) Ry(yaw) Rx(pitch)`` (column vectors) -> (pitch, yaw, roll) in degrees, yaw in [-90, 90]:
    LivePortrait's angles (its ``R`` acting on row vectors is this matrix transposed)."""
    yaw = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rotation[2, 1], rotation[2, 2])
    roll = np.arctan2(rotation[1, 0], rotation[0, 0])
    return np.degrees(np.array([pitch, yaw, roll]))


def head_pose_from_landmarks(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, 3) head pose (pitch, yaw, roll in degrees) of (T, 68, 2) landmarks on (H, W) = ``size`` frames: the
    rotation taking :data:`POSE_MODEL` to the camera (OpenCV's iterative PnP; a pinhole camera with the focal length
    the frame's width, centred, no distortion), as LivePortrait's angles. 0 faces the camera upright; positive roll
    turns clockwise on screen (as :func:`face_frame`'s). A generic face, so these are pseudo-labels: good to a few
    degrees on frontal faces, as the recipe's head-pose term wants."""
    import cv2

    points = _check_landmarks(points)
    if points.shape[1] != 68:
        raise ValueError(f"head pose is estimated from the 68-point layout, got {points.shape[1]} points")
    height, width = size
    camera = np.array([[width, 0.0, width / 2.0], [0.0, width, height / 2.0], [0.0, 0.0, 1.0]])
    angles = np.empty((len(points), 3), np.float32)
    for t, frame in enumerate(points):
        found, rvec, _ = cv2.solvePnP(POSE_MODEL, frame[list(POSE_MODEL_POINTS)].astype(np.float64), camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
        if not found:
            raise ValueError(f"head pose: PnP found no pose for frame {t}")
        angles[t] = rotation_to_angles(cv2.Rodrigues(rvec)[0])
    return angles
