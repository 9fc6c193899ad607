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
