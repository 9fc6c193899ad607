"""Entropy-based uncertainty maps from N sampled probability maps (numpy or torch).

For per-sample foreground probabilities p_n (pixelwise, binary), with H the full binary
entropy in nats, ``H(p) = −p·log p − (1−p)·log(1−p)``:

- predictive = H(mean_n p_n)       total uncertainty of the averaged prediction
- aleatoric  = mean_n H(p_n)       expected data uncertainty
- epistemic  = predictive − aleatoric  (mutual information, ≥ 0 by concavity of H)

Probabilities are clipped to [eps, 1−eps] so saturated maps give 0 instead of NaN.
"""

from __future__ import annotations

from typing import Any

from salkit.kernels._namespace import namespace_of

EPS = 1e-7


def binary_entropy(p: Any, eps: float = EPS) -> Any:
    """Elementwise full binary entropy in nats of probabilities ``p`` (any shape)."""
    xp = namespace_of(p)
    q = xp.clip(p, eps, 1.0 - eps)
    return -(q * xp.log(q) + (1.0 - q) * xp.log(1.0 - q))


def uncertainty_maps(probs: Any, eps: float = EPS) -> dict[str, Any]:
    """Uncertainty maps from ``probs`` of shape (N, B, 1, H, W); each output is (B, 1, H, W)."""
    if probs.ndim != 5:
        raise ValueError(f"probs must be (N, B, 1, H, W), got shape {tuple(probs.shape)}")
    xp = namespace_of(probs)
    predictive = binary_entropy(xp.mean(probs, 0), eps)  # (B, 1, H, W)
    aleatoric = xp.mean(binary_entropy(probs, eps), 0)  # (B, 1, H, W)
    return {"predictive": predictive, "aleatoric": aleatoric, "epistemic": predictive - aleatoric}
