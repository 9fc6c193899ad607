"""QE-FPN's loss (Eq. 15): BCE(edge(S), edge(E)) + BCE(S, E) + IoU(S, E).

S = sigmoid(logits) is the predicted map, E the ground-truth mask in [0, 1]. edge(·) is the fixed
operator's magnitude from ``salkit.kernels.edges``, which maps any map with values in [0, 1] into
[0, 1] (division by the operator's largest possible magnitude; flat regions are exactly 0), so both
edge maps are valid BCE arguments without clamping. The edge BCE takes logs of ``x + 1e-6`` and
``1 − x + 1e-6``: flat regions have a magnitude of exactly 0 (and binary masks exactly 1 at some
corners), where a plain log would be infinite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salkit.base.errors import SalkitError
from salkit.kernels.edges import OPERATORS, edge_magnitude
from salkit.train.losses import soft_iou_loss

EDGE_CHOICES = (*OPERATORS, "none")
_LOG_EPS = 1e-6


def soft_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities ``pred`` against soft targets, finite gradients."""
    return -(target * torch.log(pred + _LOG_EPS) + (1 - target) * torch.log(1 - pred + _LOG_EPS)).mean()


def qefpn_loss(logits: torch.Tensor, mask: torch.Tensor, edge: str = "sobel") -> dict[str, torch.Tensor]:
    """Loss terms for logits and masks (B,1,S,S); ``edge="none"`` drops the edge term."""
    if edge not in EDGE_CHOICES:
        raise SalkitError(f"unknown edge operator {edge!r}; choose one of {', '.join(EDGE_CHOICES)}")
    prob = torch.sigmoid(logits)
    terms = {
        "bce": F.binary_cross_entropy_with_logits(logits, mask),
        "iou": soft_iou_loss(prob, mask),
    }
    if edge != "none":
        terms["edge"] = soft_bce(edge_magnitude(prob, edge), edge_magnitude(mask, edge))
    terms["loss"] = sum(terms.values())
    return terms
