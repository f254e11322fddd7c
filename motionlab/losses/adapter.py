"""The domain adapter's loss: paired supervision, contrastive alignment, cycle consistency, distribution matching
and temporal terms, each weighted from ``conf/loss/adapter*.yaml`` (weight 0 switches a term off)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionlab.losses.base import TaskLoss
from motionlab.losses.contrastive import info_nce
from motionlab.losses.landmarks import guided_keypoint_motion


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)) -> torch.Tensor:
    """Unbiased estimate of the squared maximum mean discrepancy between samples (N, D) and (M, D) (N, M >= 2) under a
    sum of Gaussian kernels ``exp(-|a - b|^2 / (2 h^2 D))`` (bandwidths per dimension): 0 in expectation when the two
    sets share a distribution."""
    d = x.shape[1]
    joint = torch.cat([x, y])
    distances = torch.cdist(joint, joint).square()
    kernel = sum(torch.exp(-distances / (2 * h * h * d)) for h in bandwidths)
    n, m = len(x), len(y)

    def within(block: torch.Tensor, size: int) -> torch.Tensor:
        return (block.sum() - block.diagonal().sum()) / (size * (size - 1))

    return within(kernel[:n, :n], n) + within(kernel[n:, n:], m) - 2 * kernel[:n, n:].mean()


def flat_motion(motion: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, K * 6) vector of a relative motion: displacements and Jacobian ratios minus identity."""
    eye = torch.eye(2, device=motion["value"].device, dtype=motion["value"].dtype)
    return torch.cat([motion["value"].flatten(1), (motion["jacobian"] - eye).flatten(1)], dim=1)


class AdapterLoss(TaskLoss):
    """Terms (weights in parentheses are the config keys):

    - ``keypoint`` / ``jacobian`` (paired): L1 between predicted and the descriptor model's relative motion;
    - ``contrastive``: symmetric InfoNCE between adapter outputs and the descriptor motion of the same frames, the
      batch's other frames as negatives (unit vectors, ``temperature``);
    - ``cycle``: landmarks -> descriptors -> landmarks through the inverse adapter, and descriptors -> landmarks ->
      descriptors (the cartoon stream's window through the inverse, frame by frame, then the adapter);
    - ``distribution``: MMD between the adapter's outputs (displacement and velocity) on the human stream and the
      descriptor motion of the cartoon stream; the unpaired signal;
    - ``smoothness``: second difference over time of the adapter's displacements (frames t - 1, t, t + 1);
    - ``relative``: the reference frame maps to no motion (zero displacement, identity Jacobians);
    - ``correspondence``: 1 - the cosine, over the batch, between the adapter's displacements of a landmark-guided
      descriptor model's guided keypoints and those of the landmarks they were guided to, carried into the portrait's
      face frame (:func:`~motionlab.losses.landmarks.guided_keypoint_motion`): a geometric prior for unpaired data that
      fixes which way each keypoint moves (which the distribution term cannot tell from its mirror) and leaves the
      gain to the other terms.

    ``outputs``: the adapter's motion at ``t - 1``, ``t``, ``t + 1`` (``prev``, ``current``, ``next``); binds
    ``adapter`` and, for cycles, ``inverse``.
    """

    def __init__(self, keypoint: float = 0.0, jacobian: float = 0.0, contrastive: float = 0.0, cycle: float = 0.0, distribution: float = 0.0,
                 smoothness: float = 0.0, relative: float = 0.0, temperature: float = 0.1, correspondence: float = 0.0):
        super().__init__(keypoint=keypoint, jacobian=jacobian, contrastive=contrastive, cycle=cycle, distribution=distribution,
                         smoothness=smoothness, relative=relative, correspondence=correspondence)
        self.temperature = temperature

    def forward(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        current = outputs["current"]
        target = {"value": batch["descriptor_delta"], "jacobian": batch.get("jacobian_ratio", current["jacobian"].detach())}
        terms = {}
        if self.active("keypoint"):
            terms["keypoint"] = F.l1_loss(current["value"], target["value"])
        if self.active("jacobian") and "jacobian_ratio" in batch:
            terms["jacobian"] = F.l1_loss(current["jacobian"], target["jacobian"])
        if self.active("contrastive"):
            terms["contrastive"] = info_nce(F.normalize(flat_motion(current), dim=1), F.normalize(flat_motion(target), dim=1),
                                            temperature=self.temperature)
        if self.active("cycle"):
            terms["cycle"] = self._cycle(current, batch)
        if self.active("distribution"):
            velocity = {key: outputs["next"][key] - current[key] for key in ("value", "jacobian")}
            window = batch["descriptor_window"]
            centre = window.shape[1] // 2
            cartoon = torch.cat([window[:, centre].flatten(1), (window[:, min(centre + 1, window.shape[1] - 1)] - window[:, centre]).flatten(1)], 1)
            human = torch.cat([current["value"].flatten(1), velocity["value"].flatten(1)], 1)
            terms["distribution"] = gaussian_mmd(human, cartoon)
        if self.active("smoothness"):
            terms["smoothness"] = (outputs["next"]["value"] - 2 * current["value"] + outputs["prev"]["value"]).abs().mean()
        if self.active("relative"):
            adapter = self.network("adapter")
            still = adapter(torch.zeros_like(batch["landmarks"]), batch["reference_landmarks"], batch["reference_descriptors"])
            eye = torch.eye(2, device=still["value"].device, dtype=still["value"].dtype)
            terms["relative"] = still["value"].abs().mean() + (still["jacobian"] - eye).abs().mean()
        if self.active("correspondence"):
            window = batch["landmarks"]
            prior = guided_keypoint_motion(window[:, window.shape[1] // 2], batch["reference_descriptors"])
            predicted = current["value"][:, : prior.shape[1]]
            terms["correspondence"] = 1.0 - F.cosine_similarity(predicted.flatten(), prior.flatten(), dim=0, eps=1e-8)
        return self.total(terms)

    def _cycle(self, current: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
        adapter, inverse = self.network("adapter"), self.network("inverse")
        reference = batch["reference_landmarks"]
        window = batch["landmarks"]
        centre = window.shape[1] // 2
        landmarks_back = inverse(current["value"], reference)
        forward_cycle = F.l1_loss(landmarks_back, window[:, centre])
        # descriptors -> landmarks (each frame of the cartoon stream's window, on this sample's human face) -> descriptors
        descriptors = batch["descriptor_window"]
        b, w = descriptors.shape[:2]
        imagined = inverse(descriptors.flatten(0, 1), reference.repeat_interleave(w, dim=0)).view(b, w, *window.shape[2:])
        back = adapter(imagined, reference, batch["reference_descriptors"])
        backward_cycle = F.l1_loss(back["value"], descriptors[:, centre])
        return forward_cycle + backward_cycle
