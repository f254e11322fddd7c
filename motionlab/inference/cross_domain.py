"""Cross-domain evaluation: real (or toy) human drivers animating cartoon portraits through an adapter, scored by
motion agreement.

For each driver clip, signals measured on the driver (mouth opening, eye opening, head roll, x / y translation,
:func:`motionlab.geometry.landmarks.motion_signals` of its 68 landmarks) are correlated over time (Pearson) with the
same signals measured on the generated frames: the descriptor model's keypoints of each generated frame, mapped to
the cartoon's 68 landmarks by a linear regression fitted on the toy world's training clips (the named-point
regression of the keypoint-to-ground-truth protocol), then the same signal functions.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import torch

from motionlab.data import stored_datamodule
from motionlab.data.cross_domain import CrossDomainDataModule
from motionlab.data.datasets import frames_to_tensor
from motionlab.data.landmarks import LandmarkSequence, read_landmarks
from motionlab.data.synthetic import toy_face_labels
from motionlab.data.video_io import open_clip, read_image
from motionlab.geometry.landmarks import SIGNALS, similarity_to
from motionlab.metrics.motion import motion_agreement
from motionlab.models import motionlab_meta
from motionlab.tasks.adapter_predictor import LandmarkDrivenPredictor, load_adapter_predictor
from motionlab.utils.checkpoint import load_checkpoint
from motionlab.utils.errors import InputError
from motionlab.utils.io import atomic_write_text, write_json


def _aligned(value: np.ndarray, jacobian: np.ndarray | None, weights: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """A clip's keypoints with their global motion since frame 0 taken out: (A, b) of :func:`similarity_to` (keypoints
    weighted by ``weights``) and the (T, K, 2) keypoints and (T, K, 2, 2) Jacobians mapped back by its inverse."""
    matrix, shift = similarity_to(value, value[0], weights)
    collapsed = np.flatnonzero(np.abs(np.linalg.det(matrix)) <= 1e-12)
    if collapsed.size:
        raise ValueError(f"the descriptor keypoints of frame {int(collapsed[0])} all coincide: no head motion maps frame 0 onto them")
    inverse = np.linalg.inv(matrix)
    aligned = np.einsum("tij,tkj->tki", inverse, value - shift[:, None])
    return matrix, shift, aligned, None if jacobian is None else np.einsum("tij,tkjl->tkil", inverse, jacobian)


def _expression_features(aligned: np.ndarray, jacobian: np.ndarray | None) -> np.ndarray:
    """(T, F) local motion since frame 0 of globally aligned keypoints: displacements and Jacobian changes (local
    rotation and stretch), with a bias column."""
    parts = [(aligned - aligned[0]).reshape(len(aligned), -1)]
    if jacobian is not None:
        parts.append((jacobian - jacobian[0]).reshape(len(jacobian), -1))
    return np.concatenate([*parts, np.ones((len(aligned), 1))], axis=1)


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float = 1e-4) -> np.ndarray:
    return np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)


# the toy cartoon's landmarks that move only with its head (nose, eye corners): its head motion, exactly
RIGID_LANDMARKS = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)


class NamedPointRegression:
    """The descriptor model's motion -> the cartoon's 68 landmarks (pixels at the data's image size), fitted by
    ridge least squares on every frame of a cross-domain datamodule's training clips (the named-point regression of
    the keypoint-to-ground-truth protocol, applied to motion).

    Global and local motion are taken apart, as a face model separates pose from expression: the similarity that
    best carries the first frame's keypoints onto a frame's (:func:`similarity_to`) is the head's motion, applied to
    the landmarks as it is; what the keypoints do beyond it (displacements and Jacobians in the first frame's
    coordinates) is regressed to what the landmarks do beyond it. Fitted in one pooled regression instead, the
    large head motion sets the weights and leaks into the small mouth and eyelid gaps. The similarity weighs each
    keypoint by ``rigidity``: the inverse of its mean squared distance, over the training frames, from where the
    head's true motion (the cartoon's :data:`RIGID_LANDMARKS`) carries its first-frame position, so lips and lids,
    which move on their own, count less than eye corners. ``layout`` maps the first frame's keypoints to absolute
    landmarks (the face's layout); ``motion`` maps local keypoint motion to local landmark motion."""

    def __init__(self, datamodule: CrossDomainDataModule):
        clips = datamodule.clips["train"]
        self.image_size = datamodule.image_size
        landmarks = [toy_face_labels(clip.record.clip, self.image_size)[0] for clip in clips]
        keypoints = np.concatenate([clip.value.reshape(len(clip), -1) for clip in clips])
        self.layout = _ridge(np.concatenate([keypoints, np.ones((len(keypoints), 1))], 1), np.concatenate(landmarks).reshape(len(keypoints), -1))
        off_head = np.concatenate([self._off_head(self._pixels(clip.value), marks) for clip, marks in zip(clips, landmarks)]).mean(0)
        # a floor of a tenth of a pixel: a keypoint that never left the head would otherwise take all the weight
        self.rigidity = 1.0 / np.maximum(off_head, 0.01)
        features, local_motion = [], []
        for clip, marks in zip(clips, landmarks):
            matrix, shift, aligned, jacobian = _aligned(self._pixels(clip.value), clip.jacobian, self.rigidity)
            features.append(_expression_features(aligned, jacobian))
            unposed = np.einsum("tij,tkj->tki", np.linalg.inv(matrix), marks - shift[:, None])
            local_motion.append((unposed - unposed[0]).reshape(len(marks), -1))
        self.motion = _ridge(np.concatenate(features), np.concatenate(local_motion))

    @staticmethod
    def _off_head(points: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(T, K) squared pixel distances of a clip's keypoints from their first-frame positions carried by the head's
        true motion."""
        matrix, shift = similarity_to(landmarks[:, RIGID_LANDMARKS], landmarks[0, RIGID_LANDMARKS])
        carried = np.einsum("tij,kj->tki", matrix, points[0]) + shift[:, None]
        return ((points - carried) ** 2).sum(-1)

    def _pixels(self, value: np.ndarray) -> np.ndarray:
        """Normalised keypoints (corner-aligned, -1 and 1 at the first and last pixel centres) in the landmarks' pixels:
        the head's similarity must carry both about the same origin."""
        return (value + 1.0) * (self.image_size - 1) / 2.0

    def __call__(self, value: np.ndarray, jacobian: np.ndarray | None) -> np.ndarray:
        """(T, 68, 2) landmarks of a clip from its (T, K, 2) keypoints and (T, K, 2, 2) Jacobians."""
        matrix, shift, aligned, aligned_jacobian = _aligned(self._pixels(value), jacobian, self.rigidity)
        first = np.concatenate([value[0].reshape(-1), [1.0]]) @ self.layout
        local = (first + _expression_features(aligned, aligned_jacobian) @ self.motion).reshape(len(value), -1, 2)
        return np.einsum("tij,tkj->tki", matrix, local) + shift[:, None]


def _numpy(keypoints) -> tuple[np.ndarray, np.ndarray | None]:
    return keypoints.value.cpu().numpy(), None if keypoints.jacobian is None else keypoints.jacobian.cpu().numpy()


def _landmarks_of(regression: NamedPointRegression, parts: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """A clip's (T, 68, 2) landmarks from its keypoints detected batch by batch."""
    jacobian = None if parts[0][1] is None else np.concatenate([part[1] for part in parts])
    return regression(np.concatenate([part[0] for part in parts]), jacobian)


@torch.no_grad()
def animate_and_measure(predictor: LandmarkDrivenPredictor, portrait: np.ndarray, landmarks: LandmarkSequence, regression: NamedPointRegression,
                     batch_size: int = 32, reference: str = "neutral") -> dict:
    """Animate ``portrait`` with ``landmarks``; returns per-signal ``correlation`` and ``amplitude``, both ``driver`` /
    ``generated`` signal series and frame counts, and ``adapted_correlation`` / ``adapted_amplitude``: the same on the
    adapted keypoints themselves (through the same regression, before the generator), which tells the adapter's share
    from the generator's. ``reference``: the driver frame motion is measured from (:meth:`LandmarkSequence.reference_frame`),
    returned as ``reference_frame``."""
    source = frames_to_tensor(portrait[None], predictor.image_size).to(predictor.device)
    reference_frame = landmarks.reference_frame(reference)
    motion = predictor.motion(landmarks.points, source, reference_frame)
    generated, adapted = [], []
    for start in range(0, len(landmarks), batch_size):
        part = {key: value[start : start + batch_size] for key, value in motion.items()}
        out = predictor(source, part)
        generated.append(_numpy(predictor.descriptor_model.kp_detector(out["generated"])))
        adapted.append(_numpy(out["generated_keypoints"]))
    adapted_agreement = motion_agreement(landmarks.points, _landmarks_of(regression, adapted))
    return {**motion_agreement(landmarks.points, _landmarks_of(regression, generated)),
            "adapted_correlation": adapted_agreement["correlation"], "adapted_amplitude": adapted_agreement["amplitude"],
            "adapted_ccc": adapted_agreement["ccc"],
            "frames": len(landmarks), "frames_without_face": int((~landmarks.found).sum()), "reference_frame": reference_frame}


@torch.no_grad()
def measurement_ceiling(datamodule: CrossDomainDataModule, regression: NamedPointRegression, descriptor_model: torch.nn.Module | None = None,
                        max_clips: int = 8) -> dict[str, dict[str, float]]:
    """Mean agreement between the toy test clips' human performances and their *own* cartoon frames' descriptors:
    ``descriptors`` (no adapter, no generator; every test clip): how much of each signal the descriptor model and the
    regression can show at all; with ``descriptor_model``, ``generated`` (the first ``max_clips`` test clips): those
    descriptors driving the model's generator from each clip's first frame, measured on the generated frames as
    drivers are, so what the generator renders of each signal bounds any driver too."""
    clips = datamodule.clips["test"]
    rows = {"descriptors": [motion_agreement(clip.landmarks, regression(clip.value, clip.jacobian))["correlation"] for clip in clips]}
    if descriptor_model is not None:
        device = next(descriptor_model.parameters()).device
        rows["generated"] = []
        for clip in clips[:max_clips]:
            frames = frames_to_tensor(open_clip(clip.record.clip).get(list(range(len(clip)))), datamodule.image_size).to(device)
            source = frames[:1].expand(len(frames), -1, -1, -1)
            kp_source = descriptor_model.kp_detector(frames[:1]).expand(len(frames))
            driving = descriptor_model.kp_detector(frames)
            image = descriptor_model.animate(source, kp_driving=driving, kp_source=kp_source,
                                             source_features=descriptor_model.encode_source(frames[:1]))["prediction"].clamp(0, 1)
            points = _landmarks_of(regression, [_numpy(descriptor_model.kp_detector(image))])
            rows["generated"].append(motion_agreement(clip.landmarks, points)["correlation"])
    return {kind: {name: float(np.nanmean([row[name] for row in values])) for name in SIGNALS} for kind, values in rows.items()}


def adapter_datamodule(adapter_ckpt: str | os.PathLike, descriptor_ckpt: str | os.PathLike, cache_dir: str | os.PathLike) -> CrossDomainDataModule:
    """The cross-domain datamodule an adapter was trained on, rebuilt from its stored data config (trusted
    datamodule classes only) with this evaluation's descriptor checkpoint and cache folder."""
    meta = motionlab_meta(load_checkpoint(adapter_ckpt), adapter_ckpt)
    if meta is None:
        raise InputError(f"{adapter_ckpt} is not a motionlab checkpoint; give the adapter checkpoint motionlab-train wrote")
    datamodule = stored_datamodule(meta, adapter_ckpt, cache_dir, descriptor_ckpt=str(descriptor_ckpt))
    datamodule.setup()
    return datamodule


def _svg_plot(driver: list[float], generated: list[float], title: str, width: int = 360, height: int = 110) -> str:
    """Two z-scored series over time as an inline SVG (driver blue, generated orange)."""
    def points(series: list[float]) -> str:
        values = np.asarray(series, np.float64)
        values = (values - values.mean()) / (values.std() + 1e-9)
        xs = np.linspace(4, width - 4, len(values))
        ys = height / 2 - np.clip(values, -3, 3) * (height / 2 - 6) / 3
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))

    return (f'<figure><svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
            f'<rect width="100%" height="100%" fill="#fafafa" stroke="#ccc"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points(driver)}"/>'
            f'<polyline fill="none" stroke="#ff7f0e" stroke-width="1.5" points="{points(generated)}"/></svg>'
            f'<figcaption>{html.escape(title)}</figcaption></figure>')


# metric-key stem -> the row label of the ceilings (measurement_ceiling) in the reports
CEILINGS = {"ceiling": "ceiling (toy test clips, own descriptors)", "ceiling_generated": "ceiling through the generator (own descriptors -> generated frames)"}


def write_cross_domain_reports(result: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """``eval.json`` (everything), ``metrics.json`` (flat numbers), ``eval.md`` and ``eval.html`` (with plots)."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "eval.json", "metrics": out_dir / "metrics.json", "md": out_dir / "eval.md", "html": out_dir / "eval.html"}
    write_json(paths["json"], result)
    write_json(paths["metrics"], result["metrics"])
    lines = [f"# motionlab cross-domain evaluation: {result['source']}", "", "Motion agreement (Pearson over time, driver vs generated):", "",
             "| clip | frames (reference frame) | " + " | ".join(SIGNALS) + " |", "|---|---:|" + "---:|" * len(SIGNALS)]
    sections = []
    for name, clip in result["clips"].items():
        lines.append(f"| {name} | {clip['frames']} ({clip['reference_frame']}) | " + " | ".join(f"{clip['correlation'][s]:.3f}" for s in SIGNALS) + " |")
        plots = "".join(_svg_plot(clip["driver"][s], clip["generated"][s], f"{s}: r = {clip['correlation'][s]:.3f}, CCC = {clip['ccc'][s]:.3f}, "
                                  f"amplitude {clip['amplitude'][s]:.2f}") for s in SIGNALS)
        sections.append(f"<h2>{html.escape(name)} ({clip['frames']} frames)</h2><div class=\"plots\">{plots}</div>")
    for name, clip in result["clips"].items():
        lines.append(f"| {name}: adapted keypoints, before the generator | | " + " | ".join(f"{clip['adapted_correlation'][s]:.3f}" for s in SIGNALS) + " |")
    for key, label in CEILINGS.items():
        values = [result["metrics"].get(f"agreement/{key}/{s}", float("nan")) for s in SIGNALS]
        lines.append(f"| {label} | | " + " | ".join(f"{value:.3f}" for value in values) + " |")
    lines += ["", "Concordance (Lin's CCC, driver vs generated: 1 only when the motion comes through at its size, where r is blind "
              "to scale):", "", "| clip | " + " | ".join(SIGNALS) + " |", "|---|" + "---:|" * len(SIGNALS)]
    lines += [f"| {name} | " + " | ".join(f"{clip['ccc'][s]:.3f}" for s in SIGNALS) + " |" for name, clip in result["clips"].items()]
    lines += [f"| {name}: adapted keypoints, before the generator | " + " | ".join(f"{clip['adapted_ccc'][s]:.3f}" for s in SIGNALS) + " |"
              for name, clip in result["clips"].items()]
    lines += ["", "Amplitude (the generated signal's standard deviation over the driver's; 1: all of the motion comes through):", "",
              "| clip | " + " | ".join(SIGNALS) + " |", "|---|" + "---:|" * len(SIGNALS)]
    lines += [f"| {name} | " + " | ".join(f"{clip['amplitude'][s]:.3f}" for s in SIGNALS) + " |" for name, clip in result["clips"].items()]
    lines += [f"| {name}: adapted keypoints, before the generator | " + " | ".join(f"{clip['adapted_amplitude'][s]:.3f}" for s in SIGNALS) + " |"
              for name, clip in result["clips"].items()]
    lines += ["", "Signals: " + result["note"], ""]
    atomic_write_text(paths["md"], "\n".join(lines))
    atomic_write_text(paths["html"], f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>motionlab cross-domain evaluation</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} .plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 0.85em; color: #333; }}</style></head><body>
<h1>motionlab cross-domain evaluation</h1><p>{html.escape(result['source'])}</p>
<p>Blue: the driver's signal (its landmarks); orange: the same signal on the generated frames (keypoints through the
named-point regression). Both z-scored.</p>{''.join(sections)}
<p>{html.escape(result['note'])}</p></body></html>
""")
    return paths


def evaluate_cross_domain(descriptor_ckpt: str | os.PathLike, adapter_ckpt: str | os.PathLike, drivers: list[str], cache_dir: str | os.PathLike,
                          portrait: str | os.PathLike | None = None, max_frames: int | None = None, device: str = "cpu",
                          landmark_reference: str = "neutral") -> dict:
    """Motion agreement of every driver (any landmark source) animating ``portrait`` (default: the first test
    identity's cartoon portrait of the adapter's toy world). Metrics are ``agreement/<clip>/<signal>``, their means
    over clips, ``agreement/mean/<signal>``, ``ccc/<clip or mean>/<signal>`` (Lin's concordance),
    ``amplitude/<clip or mean>/<signal>`` (generated std over driver std;
    ``amplitude_adapted/<clip>/<signal>`` on the adapted keypoints), and ``agreement/ceiling/<signal>``
    (:func:`measurement_ceiling`)."""
    predictor = load_adapter_predictor(descriptor_ckpt, adapter_ckpt, device)
    datamodule = adapter_datamodule(adapter_ckpt, descriptor_ckpt, cache_dir)
    regression = NamedPointRegression(datamodule)
    portrait_path = Path(portrait) if portrait is not None else datamodule.clips["test"][0].record.portrait
    image = read_image(portrait_path)
    clips, metrics = {}, {}
    for driver in drivers:
        name = Path(driver).stem if Path(driver).is_file() else Path(driver).name
        clips[name] = animate_and_measure(predictor, image, read_landmarks(driver, max_frames=max_frames), regression, reference=landmark_reference)
        metrics.update({f"agreement/{name}/{s}": value for s, value in clips[name]["correlation"].items()})
        metrics.update({f"agreement_adapted/{name}/{s}": value for s, value in clips[name]["adapted_correlation"].items()})
        metrics.update({f"amplitude/{name}/{s}": value for s, value in clips[name]["amplitude"].items()})
        metrics.update({f"ccc/{name}/{s}": value for s, value in clips[name]["ccc"].items()})
        metrics.update({f"amplitude_adapted/{name}/{s}": value for s, value in clips[name]["adapted_amplitude"].items()})
    for s in SIGNALS:
        metrics[f"agreement/mean/{s}"] = float(np.nanmean([clip["correlation"][s] for clip in clips.values()]))
        metrics[f"amplitude/mean/{s}"] = float(np.nanmean([clip["amplitude"][s] for clip in clips.values()]))
        metrics[f"ccc/mean/{s}"] = float(np.nanmean([clip["ccc"][s] for clip in clips.values()]))
        metrics[f"agreement_adapted/mean/{s}"] = float(np.nanmean([clip["adapted_correlation"][s] for clip in clips.values()]))
    ceilings = measurement_ceiling(datamodule, regression, predictor.descriptor_model)
    metrics.update({f"agreement/ceiling/{s}": value for s, value in ceilings["descriptors"].items()})
    metrics.update({f"agreement/ceiling_generated/{s}": value for s, value in ceilings["generated"].items()})
    note = ("Driver motion is measured from each clip's reference frame (landmark_reference: 'neutral', its frame with the lips "
            "closest together among those with open eyes and a typical head pose, or 'first'). Mouth / eye opening: signed inner-lip and eyelid gaps over the inter-ocular distance; head roll: the eye line's angle; x / y: "
            "the eye midpoint's displacement. Generated-side landmarks come from the descriptor model's keypoints and Jacobians on the "
            "generated frames through a regression fitted on the toy world's training clips (the head's similarity, keypoints "
            "weighted by how rigidly they followed the head there, then local motion); amplitude/* is the generated signal's "
            "standard deviation over the driver's (both in inter-ocular units or radians), which the correlations, blind to scale, do not show; agreement_adapted and amplitude_adapted are the same "
            "measurements on the adapted keypoints before the generator. agreement/ceiling is "
            "the measurement on the toy test clips' own cartoon frames (no adapter, no generator), agreement/ceiling_generated on "
            "what the generator renders from those clips' own descriptors: no driver can score above either.")
    return {"source": f"descriptor {descriptor_ckpt}, adapter {adapter_ckpt}, portrait {portrait_path}, landmark_reference {landmark_reference}",
            "metrics": metrics, "clips": clips, "note": note}
