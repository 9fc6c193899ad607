"""What the energy U does to maps, measured on a fixed batch: the numbers behind the plots.

``probe(model, x, masks, degraded, steps, step_size)`` returns one row of scalars:

* ``U_gt``, ``U_hat``, ``U_degraded``, ``U_tilde`` — mean energy of the ground truth, of one
  generator sample Ŷ, of the degraded ground truth and of Ŷ after K noise-free steps, and
  ``sep_hat`` / ``sep_degraded`` — the share of images whose Ŷ / degraded map has a higher energy
  than their own ground truth (1 = U always ranks the truth first; 0.5 = chance).
* ``grad_*`` — RMS over pixels of ∂U/∂Y in logit space, ``dUds_hat`` the same w.r.t. the
  probability (∂U/∂Y = ∂U/∂s · s(1 − s): saturated pixels barely move in logit space).
* ``scale_hat`` — RMS of Ŷ's logits (the map's own scale); ``disp_hat`` = δ²/2 · ``grad_hat``,
  the drift of one step; ``noise`` = δ, the training chain's noise per step.
* ``cos_hat`` — cosine between the probability change of a descent step (−s(1 − s)·∂U/∂Y) and the
  way to the truth (mask − s), per image, averaged: > 0 when the descent heads towards the truth.
* ``delta_hat`` — mean |σ(Ỹ) − σ(Ŷ)| after K steps; ``mae_hat`` / ``mae_tilde`` plain MAE.

Both networks run in eval mode here (the chain's mode) and are put back as they were.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from salkit.train.coop.langevin import revise_saliency
from salkit.train.coop.trainer import mask_to_logits


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def energy_and_grad(energy: torch.nn.Module, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        u = energy(y, x)  # (B,)
        (g,) = torch.autograd.grad(u.sum(), y)
    return u.detach(), g


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


def probe(model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor, degraded: torch.Tensor, steps: int,
          step_size: float, seed: int = 0) -> dict[str, float]:
    gen, energy = model.generator, model.energy
    h = torch.randn(x.shape[0], gen.latent_dim, generator=torch.Generator().manual_seed(seed))
    with eval_mode(gen, energy):
        with torch.no_grad():
            y_hat = gen.decode(gen.encode(x), h)  # (B,1,S,S) logits
        starts = {"gt": mask_to_logits(masks), "hat": y_hat, "degraded": mask_to_logits(degraded)}
        row: dict[str, float] = {}
        energies, grads = {}, {}
        for name, y in starts.items():
            energies[name], grads[name] = energy_and_grad(energy, y, x)
            row[f"U_{name}"] = float(energies[name].mean())
            row[f"grad_{name}"] = _rms(grads[name])
        y_tilde = revise_saliency(energy, y_hat, x, steps, step_size, noise=False).value
        with torch.no_grad():
            row["U_tilde"] = float(energy(y_tilde, x).mean())
    p_hat = torch.sigmoid(y_hat)
    row["U_std"] = float(torch.cat(list(energies.values())).std())
    row["sep_hat"] = float((energies["hat"] > energies["gt"]).float().mean())
    row["sep_degraded"] = float((energies["degraded"] > energies["gt"]).float().mean())
    row["dUds_hat"] = _rms(grads["hat"] / (p_hat * (1 - p_hat)).clamp(min=1e-12))
    row["scale_hat"] = _rms(y_hat)
    row["disp_hat"] = 0.5 * step_size * step_size * row["grad_hat"]
    row["noise"] = step_size
    move = (-p_hat * (1 - p_hat) * grads["hat"]).flatten(1)  # (B,S·S)
    target = (masks - p_hat).flatten(1)
    row["cos_hat"] = float(torch.nn.functional.cosine_similarity(move, target, dim=1, eps=1e-30).mean())
    p_tilde = torch.sigmoid(y_tilde)
    row["delta_hat"] = float((p_tilde - p_hat).abs().mean())
    row["mae_hat"] = float((p_hat - masks).abs().mean())
    row["mae_tilde"] = float((p_tilde - masks).abs().mean())
    return row
