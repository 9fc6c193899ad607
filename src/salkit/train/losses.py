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
