"""QE-FPN loss (Eq. 15): closed-form terms, finite differences, edge choices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from salkit.base.errors import SalkitError
from salkit.train.qefpn.loss import EDGE_CHOICES, qefpn_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 10, 10, generator=g, dtype=torch.float64) * 2
    mask = torch.zeros(2, 1, 10, 10, dtype=torch.float64)
    mask[0, 0, 2:7, 3:8] = 1.0
    mask[1, 0, 5:, :4] = 1.0
    return logits, mask


@pytest.mark.parametrize("edge", EDGE_CHOICES)
def test_loss_gradient_matches_finite_differences(edge: str) -> None:
    logits, mask = _batch()
    assert torch.autograd.gradcheck(
        lambda z: qefpn_loss(z, mask, edge)["loss"], (logits.requires_grad_(),), eps=1e-6, atol=1e-7
    )


def test_terms_against_independent_numpy_reference() -> None:
    logits, mask = _batch(1)
    terms = qefpn_loss(logits, mask, "sobel")
    s = 1 / (1 + np.exp(-logits.numpy()))
    e = mask.numpy()
    bce = -(e * np.log(s) + (1 - e) * np.log(1 - s)).mean()
    iou = np.mean([1 - ((s[b] * e[b]).sum() + 1) / ((s[b] + e[b] - s[b] * e[b]).sum() + 1) for b in range(2)])

    def sobel_edge(x: np.ndarray) -> np.ndarray:  # scipy's sobel: derivative along one axis, smoothing along the other
        gx = np.stack([scipy.ndimage.sobel(img, axis=-1, mode="nearest") for img in x[:, 0]])[:, None]
        gy = np.stack([scipy.ndimage.sobel(img, axis=-2, mode="nearest") for img in x[:, 0]])[:, None]
        eps = 1e-6
        return (np.sqrt(gx**2 + gy**2 + eps) - np.sqrt(eps)) / (np.sqrt(20 + eps) - np.sqrt(eps))

    es, ee = sobel_edge(s), sobel_edge(e)
    edge = -(ee * np.log(es + 1e-6) + (1 - ee) * np.log(1 - es + 1e-6)).mean()
    np.testing.assert_allclose(float(terms["bce"]), bce, rtol=1e-10)
    np.testing.assert_allclose(float(terms["iou"]), iou, rtol=1e-10)
    np.testing.assert_allclose(float(terms["edge"]), edge, rtol=1e-8)
    np.testing.assert_allclose(float(terms["loss"]), bce + iou + edge, rtol=1e-8)


def test_edge_term_is_finite_for_flat_and_binary_maps_and_prefers_the_target() -> None:
    _, mask = _batch()
    flat = torch.zeros_like(mask)  # S = 0.5 everywhere: edge(S) = 0 exactly
    sharp = 12.0 * (2 * mask - 1)  # S ≈ E
    flat_terms, sharp_terms = qefpn_loss(flat, mask, "sobel"), qefpn_loss(sharp, mask, "sobel")
    assert torch.isfinite(flat_terms["edge"]) and torch.isfinite(sharp_terms["edge"])
    assert sharp_terms["edge"] < flat_terms["edge"]
    assert sharp_terms["loss"] < flat_terms["loss"]


def test_none_drops_the_edge_term_and_unknown_is_an_error() -> None:
    logits, mask = _batch()
    assert "edge" not in qefpn_loss(logits, mask, "none")
    with pytest.raises(SalkitError, match="'canny'"):
        qefpn_loss(logits, mask, "canny")
