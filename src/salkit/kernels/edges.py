"""Fixed edge operators (Sobel, Prewitt, Frei-Chen, Laplacian) and a differentiable edge magnitude.

One implementation serves numpy arrays and torch tensors: the 3×3 correlation is written as a sum
of nine shifted copies of a replicate-padded map, which uses only indexing and arithmetic shared by
both libraries (torch is never imported here).

Magnitude and its range
-----------------------
For a gradient pair (Gx, Gy) the magnitude is ``sqrt(Gx² + Gy² + eps) − sqrt(eps)``; for the
Laplacian it is ``sqrt(L² + eps) − sqrt(eps)``. The ``eps`` keeps the square root differentiable
where the map is flat (the gradient of ``sqrt`` is infinite at 0, and flat regions are most of a
saliency map), and subtracting ``sqrt(eps)`` puts a flat region at exactly 0.

Maps into [0, 1] by division by the largest magnitude the operator can produce on inputs in
[0, 1]. The magnitude is a convex function of the 3×3 patch, so that maximum is attained at a
binary patch and is found exactly by enumerating the 512 binary patches (``max_magnitude``). For
inputs in [0, 1] (probabilities, binary masks) the result therefore lies in [0, 1] without clamping
and a straight step edge of full contrast scores close to 1 (Sobel: 4/√20 ≈ 0.894; the maximum √20
is reached at a corner, where Gx = 4 and Gy = 2).
Borders are replicate-padded, so the image frame itself is not an edge.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError

Array = Any  # numpy.ndarray or torch.Tensor

_SQRT2 = float(np.sqrt(2.0))

# Horizontal-derivative kernels (respond to intensity increasing left → right); the vertical one is
# the transpose. Correlation convention (no kernel flip), like torch's conv2d.
_DERIVATIVE = np.array([-1.0, 0.0, 1.0])
KERNELS: dict[str, np.ndarray] = {
    # (K, 3, 3): K = 2 gradient components, or 1 for the Laplacian
    "sobel": np.stack([np.outer([1.0, 2.0, 1.0], _DERIVATIVE), np.outer(_DERIVATIVE, [1.0, 2.0, 1.0])]),
    "prewitt": np.stack([np.outer([1.0, 1.0, 1.0], _DERIVATIVE), np.outer(_DERIVATIVE, [1.0, 1.0, 1.0])]),
    # Frei-Chen edge masks G1/G2 with their 1/(2+√2) normalisation (isotropic: √2 in the centre)
    "frei-chen": np.stack(
        [np.outer([1.0, _SQRT2, 1.0], _DERIVATIVE), np.outer(_DERIVATIVE, [1.0, _SQRT2, 1.0])]
    ) / (2.0 + _SQRT2),
    "laplacian": np.array([[[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]]),
}
OPERATORS = tuple(KERNELS)
DEFAULT_EPS = 1e-6


def kernels(name: str) -> np.ndarray:
    """The operator's kernels, shape (K, 3, 3), float64 (a copy)."""
    if name not in KERNELS:
        raise SalkitError(f"unknown edge operator {name!r}; choose one of {', '.join(OPERATORS)}")
    return KERNELS[name].copy()


@functools.lru_cache(maxsize=None)
def max_magnitude(name: str, eps: float = DEFAULT_EPS) -> float:
    """Largest ``sqrt(ΣG² + eps) − sqrt(eps)`` over 3×3 patches with values in [0, 1]."""
    k = kernels(name)  # (K, 3, 3)
    patches = np.array(list(itertools.product([0.0, 1.0], repeat=9))).reshape(512, 3, 3)  # (512, 9) → (512, 3, 3): all binary patches
    responses = np.einsum("pij,kij->pk", patches, k)  # (512, K)
    return float(np.max(np.sqrt((responses**2).sum(-1) + eps)) - np.sqrt(eps))


def _replicate_pad(x: Array) -> Array:
    """(..., H, W) -> (..., H+2, W+2), repeating the border rows and columns."""
    h, w = x.shape[-2], x.shape[-1]
    rows = [0, *range(h), h - 1]
    cols = [0, *range(w), w - 1]
    return x[..., rows, :][..., :, cols]


def correlate3x3(x: Array, kernel: np.ndarray) -> Array:
    """3×3 correlation with replicate padding: (..., H, W) -> (..., H, W), same library as x."""
    h, w = x.shape[-2], x.shape[-1]
    padded = _replicate_pad(x)  # (..., H+2, W+2)
    out = None
    for i in range(3):
        for j in range(3):
            weight = float(kernel[i, j])
            if weight == 0.0:
                continue
            term = weight * padded[..., i : i + h, j : j + w]  # (..., H, W) window shifted by (i−1, j−1)
            out = term if out is None else out + term
    assert out is not None
    return out


def edge_magnitude(x: Array, name: str = "sobel", eps: float = DEFAULT_EPS) -> Array:
    """Edge magnitude in [0, 1] of maps ``x`` of shape (..., H, W) with values in [0, 1].

    Differentiable everywhere for torch tensors (see the module doc for the mapping).
    """
    k = kernels(name)  # (K, 3, 3)
    squares = None
    for kernel in k:
        response = correlate3x3(x, kernel)  # (..., H, W)
        squares = response * response if squares is None else squares + response * response
    assert squares is not None
    magnitude = (squares + eps) ** 0.5 - eps**0.5
    return magnitude / max_magnitude(name, eps)
