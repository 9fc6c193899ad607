"""The edge-aware smoothness term (losses.edge_aware_smoothness) against a NumPy reference, and what it rewards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.train.losses import edge_aware_smoothness


def _reference(prob: np.ndarray, image: np.ndarray, alpha: float) -> float:
    intensity = image.mean(axis=1, keepdims=True)
    total = 0.0
    for axis in (2, 3):
        total += float(np.mean(np.abs(np.diff(prob, axis=axis)) * np.exp(-alpha * np.abs(np.diff(intensity, axis=axis)))))
    return total


def test_equals_a_numpy_reference_on_random_maps_and_photos() -> None:
    rng = np.random.default_rng(0)
    prob, image = rng.uniform(size=(3, 1, 9, 13)), rng.uniform(size=(3, 3, 9, 13))
    for alpha in (10.0, 2.5):
        got = edge_aware_smoothness(torch.from_numpy(prob), torch.from_numpy(image), alpha)
        assert float(got) == pytest.approx(_reference(prob, image, alpha), rel=1e-12)


def test_a_map_edge_on_the_photos_edge_costs_exp_minus_alpha_of_one_in_a_flat_region() -> None:
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0  # a vertical edge of the photo between columns 7 and 8
    on_edge, off_edge = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    on_edge[..., 8:] = 1.0
    off_edge[..., 4:] = 1.0  # the same step, where the photo is flat
    cost_on, cost_off = edge_aware_smoothness(on_edge, image), edge_aware_smoothness(off_edge, image)
    assert float(cost_on) == pytest.approx(float(cost_off) * np.exp(-10.0), rel=1e-5)
    assert float(edge_aware_smoothness(torch.full((1, 1, 16, 16), 0.7), image)) == 0.0


def test_its_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    prob = torch.from_numpy(rng.uniform(0.1, 0.9, size=(1, 1, 5, 6))).requires_grad_(True)
    image = torch.from_numpy(rng.uniform(size=(1, 3, 5, 6)))
    assert torch.autograd.gradcheck(lambda p: edge_aware_smoothness(p, image), (prob,))
