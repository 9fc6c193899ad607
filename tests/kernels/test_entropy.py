"""Entropy kernels against a SciPy reference, and numpy vs torch agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy

from salkit.kernels.entropy import binary_entropy, uncertainty_maps, uncertainty_maps_into


def _scipy_binary_entropy(p: np.ndarray) -> np.ndarray:
    flat = p.reshape(-1)  # (M,)
    return np.array([scipy_entropy([q, 1.0 - q]) for q in flat]).reshape(p.shape)


def test_binary_entropy_matches_scipy_and_is_finite_at_the_ends() -> None:
    p = np.array([0.0, 1e-3, 0.2, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(binary_entropy(p), _scipy_binary_entropy(p), atol=2e-6)
    assert binary_entropy(np.array(0.5)) == pytest.approx(np.log(2.0))


def test_uncertainty_maps_match_reference_and_decompose() -> None:
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.01, 0.99, size=(5, 2, 1, 3, 4))  # (N, B, 1, H, W)
    maps = uncertainty_maps(probs)
    ref_pred = _scipy_binary_entropy(probs.mean(0))
    ref_alea = np.mean([_scipy_binary_entropy(p) for p in probs], axis=0)
    np.testing.assert_allclose(maps["predictive"], ref_pred, atol=1e-9)
    np.testing.assert_allclose(maps["aleatoric"], ref_alea, atol=1e-9)
    np.testing.assert_allclose(maps["epistemic"], ref_pred - ref_alea, atol=1e-9)
    assert maps["epistemic"].min() >= -1e-12  # mutual information is non-negative
    assert maps["predictive"].shape == (2, 1, 3, 4)


def test_identical_samples_have_zero_epistemic() -> None:
    probs = np.repeat(np.random.default_rng(1).uniform(size=(1, 1, 1, 4, 4)), 6, axis=0)
    np.testing.assert_allclose(uncertainty_maps(probs)["epistemic"], 0.0, atol=1e-12)


def test_numpy_and_torch_forms_agree() -> None:
    probs = np.random.default_rng(2).uniform(size=(4, 3, 1, 6, 6)).astype(np.float32)
    a = uncertainty_maps(probs)
    b = uncertainty_maps(torch.from_numpy(probs))
    for key in ("predictive", "aleatoric", "epistemic"):
        assert isinstance(b[key], torch.Tensor)
        np.testing.assert_allclose(b[key].numpy(), a[key], atol=1e-6)


def test_wrong_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="N, B, 1, H, W"):
        uncertainty_maps(np.zeros((2, 1, 4, 4)))


@pytest.mark.parametrize("xp", [np, torch])
def test_the_buffered_form_rounds_exactly_as_the_expression_form(xp) -> None:
    """uncertainty_maps_into (the runtime's loop) against uncertainty_maps, bit for bit, in float32,
    saturated probabilities included (the clip matters there); buffers reused for a second call."""
    rng = np.random.default_rng(3)
    empty = (lambda shape: np.empty(shape, np.float32)) if xp is np else (lambda shape: torch.empty(shape, dtype=torch.float32))
    out = {k: empty((2, 1, 9, 7)) for k in ("predictive", "aleatoric", "epistemic")}
    work = (empty((5, 2, 1, 9, 7)), empty((2, 1, 9, 7)), empty((2, 1, 9, 7)))
    for scale in (3.0, 30.0):
        probs = (1 / (1 + np.exp(-scale * rng.standard_normal((5, 2, 1, 9, 7))))).astype(np.float32)
        probs[0, 0, 0, 0, :3] = [0.0, 1.0, 0.5]
        probs = probs if xp is np else torch.from_numpy(probs)
        expected = uncertainty_maps(probs)
        got = uncertainty_maps_into(xp, probs, out, work)
        for key in ("predictive", "aleatoric", "epistemic"):
            assert got[key] is out[key]
            np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]))
        assert float(np.asarray(expected["epistemic"]).max()) > 0.05  # the samples disagree: not all-zero maps
