"""Optional terms of the energy's θ loss that train U for the descent it is used for (not in the paper).

The paper's θ loss (mean U(data) − mean U(revised)) only asks U to *rank* the ground truth below
the revised maps. On PASCAL-S that ranking is learnt within an epoch, yet the descent from a
generator map barely moves it and, where it moves, not towards the truth (docs/coop.md, "Does
the energy refine?"). The terms here ask for the descent itself:

* ``descent_loss`` — the K-step noise-free descent the runtime performs (step δ, batch norm in
  eval mode), unrolled with ``create_graph`` so that θ receives the gradient of the BCE between
  the descended map and the ground truth ("learning to descend", as in end-to-end trained
  structured-prediction energy networks). One step's update is ``kernels.langevin.langevin_step``,
  the kernel every chain uses.
* ``corrupt_masks`` — degraded ground truths (blurred, noisy, with an erased or added box): harder
  start points than the generator's own maps, so the descent also learns to repair maps that
  another model could have made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from salkit.kernels.langevin import langevin_chain
from salkit.train.losses import soft_iou_loss


def descend_differentiably(energy: torch.nn.Module, y: torch.Tensor, x: torch.Tensor, steps: int,
                           step_size: float) -> torch.Tensor:
    """K noise-free steps from logits ``y`` (B,1,S,S), differentiable w.r.t. U's parameters."""
    y = y.detach().requires_grad_(True)
    x = x.detach()
    def grad(y_k: torch.Tensor) -> torch.Tensor:  # kept in the graph: the loss reaches U's parameters
        return torch.autograd.grad(energy(y_k, x).sum(), y_k, create_graph=True)[0]

    with torch.enable_grad():  # also under no_grad (evaluation): the chain needs ∂U/∂Y
        return langevin_chain(grad, y, steps, step_size)


def descent_loss(energy: torch.nn.Module, starts: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, steps: int,
                 step_size: float, iou: float = 0.0) -> torch.Tensor:
    """BCE (+ ``iou`` · soft IoU) between the descent from ``starts`` (logits) and ``mask``; U runs in
    eval mode (the chain's mode at training and prediction time) and is put back in its previous mode."""
    was_training = energy.training
    energy.eval()
    try:
        final = descend_differentiably(energy, starts, x, steps, step_size)
    finally:
        energy.train(was_training)
    return final_loss(final, mask, iou)


def final_loss(final: torch.Tensor, mask: torch.Tensor, iou: float = 0.0) -> torch.Tensor:
    """BCE of the descent's final logits against ``mask``, plus ``iou`` · the soft IoU loss."""
    loss = F.binary_cross_entropy_with_logits(final, mask)
    return loss + iou * soft_iou_loss(torch.sigmoid(final), mask) if iou > 0 else loss


def corrupt_masks(mask: torch.Tensor, noise: float = 0.15) -> torch.Tensor:
    """Degraded copies (B,1,S,S) in [0, 1] of binary masks: a box blur of width S/8, a shift of up to
    S/16, Gaussian noise and one box of side S/4 set to 0 or 1. Draws from the global torch RNG
    (checkpointed, so a resumed run draws the same)."""
    b, _, s, _ = mask.shape
    width = max(1, s // 8) | 1  # odd, so the blur keeps the map centred
    blurred = F.avg_pool2d(F.pad(mask, [width // 2] * 4, mode="replicate"), width, stride=1)
    shift = max(1, s // 16)
    dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,)))
    out = torch.roll(blurred, shifts=(dy, dx), dims=(2, 3))
    out = (out + noise * torch.randn_like(out)).clamp(0.0, 1.0)
    side = max(1, s // 4)
    corners = torch.randint(0, s - side + 1, (b, 2))
    fill = (torch.rand(b) < 0.5).float()
    for i in range(b):
        y0, x0 = int(corners[i, 0]), int(corners[i, 1])
        out[i, :, y0:y0 + side, x0:x0 + side] = fill[i]
    return out
