"""The energy-based model U(Y, X) of the cooperative model.

U sees ``concat(X, sigmoid(Y))`` along channels (3 image channels first, then the probability
map): Y is a **logit** map, so Langevin can move it freely (no clamping, no boundary), while the
network always sees a bounded map in [0, 1] like a ground-truth mask. After that concat the
network is a plain ``nn.Sequential`` (``self.net``) of Conv2d / BatchNorm2d / ReLU / Flatten /
Linear — the export builds its vector–Jacobian module from it:

    c3s1-32, c4s2-64, c4s2-128, c4s2-256 (Conv-BN-ReLU), c4s1-1 (no padding), fc-100

Widths scale with ``width`` (1.0 = the paper's 32-64-128-256; 2.0 = the authors' code's
64-512). The fc input size depends on the image size: (S/8 − 3)². Reduction to a scalar:
``energy = −sum(fc outputs)`` per sample (as the authors' code does); low energy = plausible.
About 0.86 M parameters at 352², width 1.0.
"""

from __future__ import annotations

import torch
from torch import nn

BASE_WIDTHS = (32, 64, 128, 256)


def energy_body(image_size: int, width: float = 1.0, in_channels: int = 4) -> nn.Sequential:
    if image_size % 8 != 0 or image_size // 8 < 4:
        raise ValueError(f"energy image_size must be a multiple of 8 and at least 32, got {image_size}")
    w1, w2, w3, w4 = (max(1, round(c * width)) for c in BASE_WIDTHS)
    side = image_size // 8 - 3  # after three stride-2 convs and one unpadded 4×4 conv
    return nn.Sequential(
        nn.Conv2d(in_channels, w1, 3, 1, 1), nn.BatchNorm2d(w1), nn.ReLU(),
        nn.Conv2d(w1, w2, 4, 2, 1), nn.BatchNorm2d(w2), nn.ReLU(),
        nn.Conv2d(w2, w3, 4, 2, 1), nn.BatchNorm2d(w3), nn.ReLU(),
        nn.Conv2d(w3, w4, 4, 2, 1), nn.BatchNorm2d(w4), nn.ReLU(),
        nn.Conv2d(w4, 1, 4, 1, 0),
        nn.Flatten(),
        nn.Linear(side * side, 100),
    )  # fmt: skip


class CoopEnergy(nn.Module):
    def __init__(self, image_size: int = 352, width: float = 1.0) -> None:
        super().__init__()
        self.image_size = image_size
        self.net = energy_body(image_size, width)

    def forward(self, y_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y_logits (B,1,S,S), x (B,3,S,S) normalised → energy (B,)."""
        return -self.net(torch.cat([x, torch.sigmoid(y_logits)], dim=1)).sum(dim=1)
