"""The local coherence term (losses.local_coherence) against a pairwise NumPy reference, and what it rewards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.train.losses import local_coherence


def _reference(prob: np.ndarray, image: np.ndarray, radius: int, sigma_xy: float, sigma_rgb: float, scale: float) -> float:
    """Every ordered pair of pixels of each (already resized) map, one at a time."""
    b, _, h, w = prob.shape
    total = 0.0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                for v in range(h):
                    for u in range(w):
                        if (v, u) == (y, x) or abs(v - y) > radius or abs(u - x) > radius:
                            continue
                        near = ((v - y) ** 2 + (u - x) ** 2) / scale ** 2 / (2 * sigma_xy ** 2)
                        alike = float(np.sum((image[n, :, y, x] - image[n, :, v, u]) ** 2)) / (2 * sigma_rgb ** 2)
                        total += np.exp(-near - alike) * abs(prob[n, 0, y, x] - prob[n, 0, v, u])
    return total / prob.size


def test_equals_a_pairwise_numpy_reference_at_full_size() -> None:
    rng = np.random.default_rng(0)
    prob, image = rng.uniform(size=(2, 1, 7, 9)), rng.uniform(size=(2, 3, 7, 9))
    for radius, sigma_xy, sigma_rgb in ((2, 1.5, 0.5), (5, 3.0, 0.3)):
        got = local_coherence(torch.from_numpy(prob), torch.from_numpy(image), radius, sigma_xy, sigma_rgb, scale=1.0)
        assert float(got) == pytest.approx(_reference(prob, image, radius, sigma_xy, sigma_rgb, 1.0), rel=1e-10)


def test_resizes_both_first_and_measures_positions_in_full_size_pixels() -> None:
    rng = np.random.default_rng(2)
    prob, image = torch.from_numpy(rng.uniform(size=(1, 1, 16, 20))), torch.from_numpy(rng.uniform(size=(1, 3, 16, 20)))
    small_p = torch.nn.functional.interpolate(prob, size=(8, 10), mode="bilinear", align_corners=False).numpy()
    small_i = torch.nn.functional.interpolate(image, size=(8, 10), mode="bilinear", align_corners=False).numpy()
    got = local_coherence(prob, image, radius=3, sigma_xy=4.0, sigma_rgb=0.4, scale=0.5)
    assert float(got) == pytest.approx(_reference(small_p, small_i, 3, 4.0, 0.4, 0.5), rel=1e-10)


def test_a_map_edge_along_the_photos_edge_costs_far_less_than_one_across_a_flat_region() -> None:
    image = torch.zeros(1, 3, 32, 32)
    image[..., 16:] = 1.0  # a vertical edge of the photo between columns 15 and 16
    on_edge, off_edge = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    on_edge[..., 16:] = 1.0
    off_edge[..., 8:] = 1.0  # the same step, where the photo is flat
    cost_on, cost_off = local_coherence(on_edge, image, scale=1.0), local_coherence(off_edge, image, scale=1.0)
    assert float(cost_on) < 1e-20 < float(cost_off)
    assert float(local_coherence(torch.full((1, 1, 32, 32), 0.3), image)) == 0.0


def test_its_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    prob = torch.from_numpy(rng.uniform(0.1, 0.9, size=(1, 1, 8, 8))).requires_grad_(True)
    image = torch.from_numpy(rng.uniform(size=(1, 3, 8, 8)))
    assert torch.autograd.gradcheck(lambda p: local_coherence(p, image, radius=2, sigma_xy=2.0, sigma_rgb=0.5, scale=0.5), (prob,))
