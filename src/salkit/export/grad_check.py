"""How far a float32 energy gradient may honestly be from the exact one: the ReLU mask-flip envelope,
and finite differences of the exported energy in float64.

The energy ``U(Y, X)`` is piecewise smooth: its gradient jumps wherever a (leaky) ReLU
pre-activation ``z`` crosses 0. A float32 implementation computes ``z`` with an error of a few
units of roundoff of the terms summed into it, so every unit whose exact ``z`` lies that close to 0
may take either side of its mask, and the gradient it returns is then a *different, equally valid*
one-sided gradient. At 352² the paper energy net has ~7·10⁶ such units; on a random input a few
dozen lie within rounding of 0, and one flip moves a patch of the gradient by up to a few percent
of its largest element. Which units flip depends on the summation order, so ONNX Runtime and torch
float32 land on either side independently (measured on a paper-size energy: in 3 of 4 random 352²
inputs one of the two, or both, flipped a unit, moving up to 124 elements by more than 1e-4 of the
largest). Comparing either with the other, or with float64 element by element, is then luck.

Two rules that do not depend on where anyone's rounding happened to fall:

* :func:`flip_envelope` bounds, element by element, what flipping the ambiguous units could
  change: a unit is ambiguous when ``|z| ≤ FLIP_MARGIN_ULPS · u · Σ|w·a|`` (``u`` = float32 unit
  roundoff, ``Σ|w·a|`` = the size of what is summed into ``z``, BatchNorm folded as in the exported
  graph); a flip changes ``∂U/∂z`` there by ``(1 − α)·∂U/∂a``; propagating those changes to ``Y``
  through ``|W|`` and the actual masks bounds the first-order effect of any subset of flips. Away
  from ambiguous units the envelope is 0, so most of the gradient is still held to the plain
  tolerance (a loose bound only near them).
* :func:`directional_errors` compares directional derivatives with central finite differences of
  the *exported* ``energy`` graph run in float64 (:mod:`salkit.export.onnx_float64`), along the
  checked gradient itself and along the float64 one. This needs no torch gradient at all, and a
  flip barely moves a directional derivative (measured ≤ 1e-5 of ``‖∇U‖``) while a wrong gradient
  moves it by O(1). An error ``e`` small along both directions is small in norm
  (``‖e‖² = ⟨e, g⟩ − ⟨e, g₆₄⟩`` for ``g = g₆₄ + e``), so together they bound the gradient's
  relative ℓ2 error by about ``√(2·DIRECTIONAL_TOLERANCE)`` whatever the masks did.

The layout walked here is the :class:`~salkit.export.vjp.EnergyStructure` the gradient graph was
built from; the exact gradient it is compared with comes from autograd of the energy module itself.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from salkit.base.errors import SalkitError
from salkit.export.vjp import EnergyStructure, fold_bn, split_body

FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24
# |z| within this many roundoffs of the terms' size counts as "could flip in float32". The units
# torch float32 flipped (paper-size energy at 352²) had |z| ≤ 0.15 u·Σ|w·a|, and every ONNX Runtime
# difference on 12 paper checkpoints (random and image inputs) stayed within the envelope this
# margin gives: ~100× room for other summation orders and instruction sets.
FLIP_MARGIN_ULPS = 16.0
# Central-difference step along a unit direction (ℓ2 norm 1 over the whole logit map), in float64.
# Measured on a one-step paper energy at 352², along the gradient: relative error 3e-8 at 1e-4,
# 4e-6 at 1e-3, 4e-5 at 1e-2 (kinks crossed grow with the step); float64 rounding would need
# ‖∇U‖ < 1e-11 of the energy's terms to matter at 1e-3.
FD_STEP = 1e-3
# A wrong gradient is off by O(1) (measured 0.5–2 for the deliberately wrong graphs in the tests).
DIRECTIONAL_TOLERANCE = 1e-2


def flip_envelope(structure: EnergyStructure, saliency: torch.Tensor,
                  image: torch.Tensor, *, image_too: bool = False) -> tuple[torch.Tensor, int]:
    """→ (bound on |Δ ∂U/∂Y| from ambiguous mask flips (B, C_s, S, S), number of ambiguous units).

    Computed in float32 (a bound needs no more), BatchNorm folded like the exported graph.
    ``image_too``: the bound on |Δ ∂U/∂X| as well, ``(bound_Y, bound_X (B, C_x, S, S))`` in place of bound_Y.
    """
    stages, tail = split_body(structure.layers)
    with torch.enable_grad():
        y = saliency.detach().float()
        s = torch.sigmoid(y)
        a = torch.cat([s, image.float()] if structure.saliency_first else [image.float(), s], dim=1)
        a = a.detach().requires_grad_(True)  # (B, C_in, S, S): the root autograd needs
        inputs, pre, outputs, weights, margins = [], [], [], [], []
        for conv, bn, slope in stages:
            weight, bias = fold_bn(conv, bn)
            weight, bias = weight.float(), bias.float()
            geometry = (conv.stride, conv.padding, conv.dilation, conv.groups)
            z = F.conv2d(a, weight, bias, *geometry)
            with torch.no_grad():
                terms = F.conv2d(a.abs(), weight.abs(), bias.abs(), *geometry)  # Σ|w·a| + |b| per unit
            margins.append(FLIP_MARGIN_ULPS * FLOAT32_UNIT_ROUNDOFF * terms)
            inputs.append((a.shape, geometry))
            weights.append(weight.abs())
            pre.append(z.detach())
            a = z if slope is None else F.leaky_relu(z, slope)
            a.retain_grad()
            outputs.append(a)
        v = a
        for layer in tail:
            v = layer(v)
        structure.reduction(v).sum().backward()

    seeds, masks, ambiguous = [], [], 0
    for (_conv, _bn, slope), z, out, margin in zip(stages, pre, outputs, margins, strict=True):
        if slope is None:
            seeds.append(torch.zeros_like(z))
            masks.append(torch.ones_like(z))
            continue
        near_zero = z.abs() <= margin
        ambiguous += int(near_zero.sum())
        seeds.append(out.grad.abs() * (1.0 - slope) * near_zero)
        masks.append(torch.where(z > 0, 1.0, abs(slope)))
    # Back through |W| and the actual masks: Σ over ambiguous units of |their flip's effect|.
    g = torch.zeros_like(seeds[-1])
    for k in reversed(range(len(stages))):
        g = g + seeds[k]  # at z_k
        shape, (stride, padding, dilation, groups) = inputs[k]
        g = torch.nn.grad.conv2d_input(shape, weights[k], g, stride, padding, dilation, groups)  # at a_{k-1}
        if k > 0:
            g = g * masks[k - 1]
    c = structure.saliency_channels
    image_channels = image.shape[1]
    channels = slice(0, c) if structure.saliency_first else slice(image_channels, image_channels + c)
    if image_too:
        image_slice = slice(c, c + image_channels) if structure.saliency_first else slice(0, image_channels)
        return (g[:, channels] * s * (1 - s), g[:, image_slice]), ambiguous
    return g[:, channels] * s * (1 - s), ambiguous


def directional_errors(energy: Callable[[np.ndarray], np.ndarray], saliency: np.ndarray,
                       grad: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Per sample: max over directions v ∈ {grad/‖grad‖, exact/‖exact‖} of
    ``|(U(Y + hv) − U(Y − hv))/2h − ⟨grad, v⟩| / max(‖grad‖, ‖exact‖)``, h = :data:`FD_STEP`.

    ``energy`` maps float64 saliency logits (n, …) to energies (n,) — the exported graph run in
    float64; all differences go through it in one batch. A sample whose gradients are both
    exactly 0 has nothing to compare (error 0).
    """
    b = saliency.shape[0]
    flat_grad = grad.reshape(b, -1).astype(np.float64)  # (B, N)
    flat_exact = exact.reshape(b, -1).astype(np.float64)
    norm_grad, norm_exact = np.linalg.norm(flat_grad, axis=1), np.linalg.norm(flat_exact, axis=1)
    directions = [flat / np.where(norm > 0, norm, 1.0)[:, None]  # (B, N), unit rows (or 0)
                  for flat, norm in ((flat_grad, norm_grad), (flat_exact, norm_exact))]
    y = saliency.astype(np.float64)
    steps = [(y + sign * FD_STEP * d.reshape(y.shape)) for d in directions for sign in (1, -1)]  # 4 × (B, C, S, S)
    energies = energy(np.concatenate(steps)).astype(np.float64).reshape(len(steps), b)  # (4·B,) → (4, B)
    scale = np.maximum(norm_grad, norm_exact)
    worst = np.zeros(b)
    for k, d in enumerate(directions):
        differences = (energies[2 * k] - energies[2 * k + 1]) / (2 * FD_STEP)
        error = np.abs(differences - np.einsum("bn,bn->b", flat_grad, d))
        worst = np.maximum(worst, np.where(scale > 0, error / np.where(scale > 0, scale, 1.0), 0.0))
    return worst


def judge_gradient(structure: EnergyStructure, inputs: Sequence[torch.Tensor], got: np.ndarray, exact: np.ndarray,
                   energy: Callable[[np.ndarray], np.ndarray] | None, energy_name: str, tolerance: float,
                   enforce: bool, where: str) -> dict[str, float]:
    """Judge a float32 gradient ``got`` of the energy at ``inputs`` (saliency logits first, then
    the image) against the float64 gradient ``exact``; → the validation record, raising a one-line
    :class:`SalkitError` starting with ``where`` if ``enforce`` and a rule fails. ``energy`` is
    the exported energy in float64 as :func:`directional_errors` wants it; without one (not asked
    for, or an operator :mod:`salkit.export.onnx_float64` does not know) the directional rule is
    skipped, and the record says so by lacking ``directional_rel_err``."""
    saliency, image = inputs[0], inputs[1]
    envelope, units = flip_envelope(structure, saliency, image)
    envelope64 = envelope.double().numpy()
    diff = np.abs(got.astype(np.float64) - exact)
    scale = float(np.abs(exact).max())
    per_scale = 1.0 / scale if scale > 0 else 1.0
    rel = float(np.maximum(diff - envelope64, 0.0).max()) * per_scale  # what flips cannot explain
    raw = float(diff.max()) * per_scale
    record = {"max_abs_err": float(diff.max()), "max_rel_err": rel, "raw_max_rel_err": raw,
              "flip_units": float(units), "flip_elements": float(np.mean(envelope64 > tolerance * scale))}
    directional = 0.0
    if energy is not None:
        directional = float(directional_errors(energy, saliency.detach().numpy(), got, exact).max())
        record["directional_rel_err"] = directional
    if enforce and rel > tolerance:
        raise SalkitError(f"{where}: ONNX Runtime differs from the float64 gradient by max abs {diff.max():.3g} "
                          f"(relative {raw:.3g}); beyond what flipping its {units} ReLU units within float32 "
                          f"rounding of 0 could change: relative {rel:.3g} > tolerance {tolerance:.1g}")
    if enforce and directional > DIRECTIONAL_TOLERANCE:
        raise SalkitError(f"{where}: directional derivatives differ from finite differences of graph "
                          f"{energy_name!r} by {directional:.3g} of the gradient's norm > tolerance "
                          f"{DIRECTIONAL_TOLERANCE:.1g} (element-wise relative error {raw:.3g})")
    return record
