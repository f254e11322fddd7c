"""Domain adapters: training (:class:`AdapterTask`) and landmark-driven animation through a descriptor model's
generator (:class:`LandmarkDrivenPredictor`).

The adapter maps another domain's face landmarks into the motion space of a frozen descriptor checkpoint (FOMM
keypoints + Jacobians); the generator takes motion only as keypoints, never driver pixels, so a human video drives
a cartoon portrait: landmarks -> normalisation (relative to a reference frame: 0 in training, where the toy clips'
domains share it; at inference the driver's neutral frame by default) -> adapter -> relative motion on the portrait's
keypoints -> generator. An adapter checkpoint records its descriptor checkpoint's SHA-256 and refuses any other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from motionlab.data.batches import AdapterBatch
from motionlab.geometry import Keypoints
from motionlab.losses.adapter import AdapterLoss
from motionlab.models import motionlab_meta
from motionlab.models.adapter import apply_motion
from motionlab.tasks.adapter_predictor import load_descriptor_model
from motionlab.tasks.base import MotionlabTask
from motionlab.utils.checkpoint import load_checkpoint
from motionlab.utils.errors import InputError
from motionlab.utils.io import file_digest


def _landmark_guided(path: Path) -> bool:
    """Whether a descriptor checkpoint's run trained its keypoints towards named landmarks (its stored config)."""
    meta = motionlab_meta(load_checkpoint(path), path)
    config = {} if meta is None else meta.get("config", {})
    return float(config.get("loss", {}).get("landmark_guidance", 0.0) or 0.0) > 0 and bool(config.get("data", {}).get("face_labels"))


class AdapterTask(MotionlabTask):
    """Trains a landmark adapter (and, for cycle terms, its inverse) into a frozen descriptor model's space.

    Args:
        net: the adapter (``landmark_adapter_mlp`` / ``landmark_adapter_temporal``).
        loss: an :class:`AdapterLoss`.
        descriptor_ckpt: the descriptor model; only its SHA-256 is stored in the adapter checkpoint. Validation
            and test use its generator to score generated frames.
        inverse: the inverse adapter (``descriptor_to_landmarks_mlp``), trained alongside when given.

    Validation / test (paired toy clips, reference frame 0, the cartoon's frame 0 as the portrait) log
    ``kp_error_pct`` (adapter keypoints vs the descriptor model's on the paired cartoon frames, % of image size),
    ``l1`` (generated vs the cartoon ground truth), the same for ``*_affine`` (a least-squares affine landmark ->
    keypoint map fitted on the training pairs, the lower baseline) and ``l1_own`` (driving with the cartoon's own
    descriptors, the upper bound), and ``gap_closed_pct`` = 100 (l1_affine - l1) / (l1_affine - l1_own) (left out when
    the baseline is no worse than the upper bound).
    """

    task_name = "adapter"

    def __init__(self, net: nn.Module, loss: AdapterLoss, optimizer: Callable, descriptor_ckpt: str,
                 scheduler: Callable | None = None, inverse: nn.Module | None = None):
        super().__init__(optimizer=optimizer, scheduler=scheduler)
        self.net, self.inverse = net, inverse
        self.descriptor_ckpt = Path(descriptor_ckpt)
        # not a sub-module: the adapter file records which descriptor model it belongs to, not a copy of it
        self._descriptor = [load_descriptor_model(self.descriptor_ckpt, net.num_kp)]
        self.descriptor_sha256 = file_digest(self.descriptor_ckpt)
        if loss.active("correspondence") and not _landmark_guided(self.descriptor_ckpt):
            raise InputError(f"loss.correspondence assumes keypoints guided to named landmarks, but {self.descriptor_ckpt} was not "
                             f"trained with loss.landmark_guidance > 0: train one with experiment=descriptor_guided_quick, or set "
                             f"loss.correspondence=0")
        self.loss = loss.bind(adapter=self.net, inverse=inverse)
        self.affine: torch.Tensor | None = None
        self._sums: dict[str, tuple[float, int]] = {}  # metric -> (sum, count) over the evaluation epoch

    @property
    def descriptor_model(self) -> nn.Module:
        model = self._descriptor[0]
        if next(model.parameters()).device != self.device:
            self._descriptor[0] = model.to(self.device)
        return self._descriptor[0]

    def forward(self, window: torch.Tensor, reference: torch.Tensor, keypoints: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(window, reference, keypoints)

    def training_step(self, batch: AdapterBatch, batch_idx: int) -> torch.Tensor:
        b = batch["landmarks"].shape[0]
        windows = torch.cat([batch["landmarks_prev"], batch["landmarks"], batch["landmarks_next"]])
        motion = self.net(windows, batch["reference_landmarks"].repeat(3, 1, 1), batch["reference_descriptors"].repeat(3, 1, 1))
        outputs = {name: {key: value[i * b : (i + 1) * b] for key, value in motion.items()} for i, name in enumerate(("prev", "current", "next"))}
        terms = self.loss(outputs, batch)
        self.log_terms("train", terms)
        return terms["total"]

    def _fit_affine(self) -> None:
        """The lower baseline: ridge least squares from landmark displacements to keypoint displacements (train pairs)."""
        landmarks, descriptors = self.trainer.datamodule.training_pairs()
        x = np.concatenate([landmarks, np.ones((len(landmarks), 1), np.float32)], axis=1).astype(np.float64)
        gram = x.T @ x + 1e-3 * np.eye(x.shape[1])
        self.affine = torch.from_numpy(np.linalg.solve(gram, x.T @ descriptors)).float()

    def _evaluation_step(self, batch: AdapterBatch, split: str) -> None:
        if self.affine is None:
            self._fit_affine()
        window = batch["landmarks"]
        centre = window[:, window.shape[1] // 2].flatten(1)
        size = batch["portrait"].shape[-2:]
        scale = (size[1] - 1) / 2.0 / size[1] * 100.0  # normalised units -> % of the image side
        reference = Keypoints(batch["reference_descriptors"], size, jacobian=batch.get("reference_jacobians"))
        eye = torch.eye(2, device=centre.device).expand(*batch["descriptor_delta"].shape[:2], 2, 2)
        affine = torch.cat([centre, torch.ones_like(centre[:, :1])], 1) @ self.affine.to(centre.device)
        motions = {
            "": self.net(window, batch["reference_landmarks"], batch["reference_descriptors"]),
            "_affine": {"value": affine.view_as(batch["descriptor_delta"]), "jacobian": eye},
            "_own": {"value": batch["descriptor_delta"], "jacobian": batch.get("jacobian_ratio", eye)},
        }
        for suffix, motion in motions.items():
            driving = apply_motion(reference, motion)
            generated = self.descriptor_model.animate(batch["portrait"], kp_driving=driving, kp_source=reference)["prediction"].clamp(0, 1)
            self._add(f"l1{suffix}", (generated - batch["driver"]).abs().mean(dim=(1, 2, 3)))
            if suffix != "_own":
                self._add(f"kp_error_pct{suffix}", (driving.value - batch["descriptors"]).norm(dim=-1).mean(dim=1) * scale)

    def _add(self, name: str, values: torch.Tensor) -> None:
        total, count = self._sums.get(name, (0.0, 0))
        self._sums[name] = (total + float(values.sum()), count + values.numel())

    def _evaluation_epoch_end(self, split: str) -> None:
        sums, self._sums = self._sums, {}
        if not sums:
            return
        # every rank's share of the held-out clips (each rank adds the same names in the same order)
        totals = self.trainer.strategy.reduce(torch.tensor(list(sums.values()), dtype=torch.float64, device=self.device), reduce_op="sum")
        values = {name: float(total / max(count, 1)) for name, (total, count) in zip(sums, totals.tolist())}
        gap = values["l1_affine"] - values["l1_own"]
        if gap > 1e-9:  # undefined when the baseline is no worse than the upper bound (an untrained generator)
            values["gap_closed_pct"] = 100.0 * (values["l1_affine"] - values["l1"]) / gap
        self.log_evaluation(split, values, prog_bar=("kp_error_pct", "gap_closed_pct"))

    def on_fit_start(self) -> None:
        self.affine = None  # refitted on this run's training pairs at the first evaluation

    def predictor_settings(self) -> dict:
        return {"descriptor_sha256": self.descriptor_sha256, "descriptor_ckpt": str(self.descriptor_ckpt), "window": self.net.window}




