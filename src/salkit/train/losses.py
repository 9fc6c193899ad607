"""Losses both model families train with."""

from __future__ import annotations

import torch


def soft_iou_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − Σ S·E / Σ (S + E − S·E), per image (B,1,H,W), averaged over the batch.

    Normalised by each image's own foreground, so a small object weighs as much as a large one,
    where a pixel-mean BCE is dominated by the background."""
    inter = (prob * target).sum(dim=(1, 2, 3))  # (B,)
    union = (prob + target - prob * target).sum(dim=(1, 2, 3))  # (B,)
    return (1.0 - (inter + 1.0) / (union + 1.0)).mean()


def edge_aware_smoothness(prob: torch.Tensor, image: torch.Tensor, alpha: float = 10.0) -> torch.Tensor:
    """Mean over pixels of |∂S|·exp(−α·|∂I|), horizontal and vertical neighbours summed.

    prob (B,1,H,W) in [0, 1]; image (B,C,H,W) in [0, 1] (its channel mean is the intensity I).
    A change of the map costs nothing where the photo has an edge and its full size where the photo
    is flat: the first-order smoothness term of scribble-supervised saliency (Zhang et al., CVPR 2020,
    α = 10), which spreads the few labelled pixels over the regions they lie in."""
    intensity = image.mean(dim=1, keepdim=True)
    cost = prob.new_zeros(())
    for dim in (2, 3):
        d_map = prob.diff(dim=dim).abs()
        d_image = intensity.diff(dim=dim).abs()
        cost = cost + (d_map * torch.exp(-alpha * d_image)).mean()
    return cost


def local_coherence(prob: torch.Tensor, image: torch.Tensor, radius: int = 5, sigma_xy: float = 6.0,
                    sigma_rgb: float = 0.1, scale: float = 0.25) -> torch.Tensor:
    """Σ over pixel pairs i ≠ j at most ``radius`` cells apart in each direction (a (2r+1)² window) of
    F(i, j)·|S_i − S_j|, over the pixels' number.

    prob (B,1,H,W) in [0, 1]; image (B,C,H,W) in [0, 1]. Both are first resized by ``scale``
    (bilinear); F(i, j) = exp(−|p_i − p_j|²/(2σ_xy²) − |I_i − I_j|²/(2σ_rgb²)), with the positions p
    in pixels of the full-size map. Each unordered pair counts twice, as in a sum over i and
    its window. The local saliency coherence term of scribble-supervised saliency (Yu et al.,
    AAAI 2021: radius 5, σ_xy 6, σ_rgb 0.1, a quarter of the size): pixels that are near and
    alike in colour should agree, which carries the strokes' labels over a window of the photo,
    where a nearest-neighbour smoothness term only reaches the next pixel."""
    if scale != 1.0:
        size = (max(1, round(prob.shape[2] * scale)), max(1, round(prob.shape[3] * scale)))
        prob = torch.nn.functional.interpolate(prob, size=size, mode="bilinear", align_corners=False)
        image = torch.nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False)
    h, w = prob.shape[2:]
    cost = prob.new_zeros(())
    # Half of the window's offsets: (dy, dx) and (−dy, −dx) give the same pairs.
    for dy in range(0, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy == 0 and dx <= 0) or dy >= h or abs(dx) >= w:
                continue
            a = (slice(None), slice(None), slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
            b = (slice(None), slice(None), slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
            near = ((dy * dy + dx * dx) / scale ** 2) / (2 * sigma_xy ** 2)
            alike = (image[a] - image[b]).pow(2).sum(dim=1, keepdim=True) / (2 * sigma_rgb ** 2)
            cost = cost + 2.0 * (torch.exp(-near - alike) * (prob[a] - prob[b]).abs()).sum()
    return cost / prob.numel()
