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

The first convolution is linear in its input channels, ``conv(cat(X, s)) = conv_X(X) + conv_s(s)``,
and X does not change while Langevin moves Y: :meth:`CoopEnergy.image_term` computes X's share
(bias included) once and :meth:`CoopEnergy.from_image_term` the energy from it and Y. The
export's split gradient graphs (salkit.export.vjp) rest on the same identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BASE_WIDTHS = (32, 64, 128, 256)
IMAGE_CHANNELS = 3  # X's channels come first in U's input, then the probability map


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

    def image_term(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,S,S) → X's share of the first convolution, bias included (B, w1, S, S): constant over Langevin steps."""
        conv = self.net[0]
        return F.conv2d(x, conv.weight[:, :IMAGE_CHANNELS], conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    def from_image_term(self, y_logits: torch.Tensor, image_term: torch.Tensor) -> torch.Tensor:
        """The energy (B,) from y_logits (B,1,S,S) and :meth:`image_term` of x: ``forward(y_logits, x)``
        with X's share precomputed (equal up to float rounding)."""
        conv = self.net[0]
        z = F.conv2d(torch.sigmoid(y_logits), conv.weight[:, IMAGE_CHANNELS:], None, conv.stride, conv.padding, conv.dilation,
                     conv.groups)
        return -self.net[1:](z + image_term).sum(dim=1)
