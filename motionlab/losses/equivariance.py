"""FOMM's equivariance terms: keypoints must move with the image under random smooth warps."""

from __future__ import annotations

from collections.abc import Callable

import torch

from motionlab.geometry import Keypoints, RandomAffineTPS


def equivariance_losses(detector: Callable[[torch.Tensor], Keypoints], images: torch.Tensor, keypoints: Keypoints,
                        transform: RandomAffineTPS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(value loss, Jacobian loss or None) of ``detector`` on (B, 3, H, W) ``images`` whose keypoints are ``keypoints``.

    Keypoints of the warped images, mapped back through the warp, must equal the images' keypoints (value term);
    with Jacobians, ``J^-1 (dW J_warped)`` must be the identity (Jacobian term). Keypoints are normalised.
    """
    warped = detector(transform.warp_images(images))
    value = (keypoints.value - transform.warp_points(warped.value)).abs().mean()
    if keypoints.jacobian is None or warped.jacobian is None:
        return value, None
    jacobian_warped = transform.jacobian(warped.value) @ warped.jacobian
    normalised = torch.inverse(keypoints.jacobian) @ jacobian_warped
    eye = torch.eye(2, device=normalised.device, dtype=normalised.dtype)
    return value, (eye - normalised).abs().mean()
