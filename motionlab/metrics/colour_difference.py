"""Colour differences in CIE Lab (kornia): the per-image quantities behind the colour-drift metric and the per-frame
traces (without torchmetrics, so the inference commands that draw traces need not import it)."""

from __future__ import annotations

import torch


def delta_e76(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIE76 colour difference: Euclidean distance in Lab. Inputs (..., 3)."""
    return (lab1 - lab2).norm(dim=-1)


def delta_e2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005 formulation), inputs (..., 3) Lab, kL=kC=kH=1."""
    l1, a1, b1 = lab1.unbind(-1)
    l2, a2, b2 = lab2.unbind(-1)
    c1, c2 = torch.hypot(a1, b1), torch.hypot(a2, b2)
    c_bar7 = ((c1 + c2) / 2) ** 7
    g = 0.5 * (1 - torch.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    zero_chroma = (c1p * c2p) == 0
    dlp, dcp = l2 - l1, c2p - c1p
    dhp = h2p - h1p
    dhp = torch.where(dhp > 180, dhp - 360, torch.where(dhp < -180, dhp + 360, dhp))
    dhp = torch.where(zero_chroma, torch.zeros_like(dhp), dhp)
    d_hp = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dhp / 2))
    l_bar, c_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = torch.where(
        zero_chroma,
        h_sum,
        torch.where((h1p - h2p).abs() <= 180, h_sum / 2, torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)),
    )
    t = (
        1
        - 0.17 * torch.cos(torch.deg2rad(h_bar - 30))
        + 0.24 * torch.cos(torch.deg2rad(2 * h_bar))
        + 0.32 * torch.cos(torch.deg2rad(3 * h_bar + 6))
        - 0.20 * torch.cos(torch.deg2rad(4 * h_bar - 63))
    )
    d_theta = 30 * torch.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(c_bar**7 / (c_bar**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar
    s_h = 1 + 0.015 * c_bar * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c
    return torch.sqrt((dlp / s_l) ** 2 + (dcp / s_c) ** 2 + (d_hp / s_h) ** 2 + r_t * (dcp / s_c) * (d_hp / s_h))


def mean_lab(images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean Lab colour of (N, 3, H, W) RGB images in [0, 1] over an optional (N, 1, H, W) region: (N, 3)."""
    # kornia.color imports all of kornia (~0.3 s): only where a colour is measured, not when inference starts
    from kornia.color import rgb_to_lab

    lab = rgb_to_lab(images.clamp(0, 1).float()).double()
    if mask is None:
        return lab.mean(dim=(-2, -1))
    weights = mask.double().expand_as(lab)
    return (lab * weights).sum(dim=(-2, -1)) / weights.sum(dim=(-2, -1)).clamp_min(1e-12)
