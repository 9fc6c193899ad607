"""The Langevin kernel against its closed form, in numpy and torch, and the two forms agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.kernels.langevin import langevin_step


def test_quadratic_energy_matches_closed_form() -> None:
    # U(y) = ½·a·y² has grad a·y, so one noise-free step multiplies y by (1 − step²·a/2).
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 1, 5, 5))
    a, step = 3.0, 0.3
    out = langevin_step(y, a * y, step)
    np.testing.assert_allclose(out, y * (1.0 - step * step * a / 2.0), rtol=1e-12)


def test_k_steps_on_quadratic_are_geometric_and_noise_adds_step_times_noise() -> None:
    rng = np.random.default_rng(1)
    y0 = rng.normal(size=(3, 4))
    noise = rng.normal(size=(3, 4))
    a, step, k = 0.5, 0.4, 5
    y = y0.copy()
    for _ in range(k):
        y = langevin_step(y, a * y, step)
    np.testing.assert_allclose(y, y0 * (1.0 - step**2 * a / 2.0) ** k, rtol=1e-12)
    noisy = langevin_step(y0, a * y0, step, noise)
    np.testing.assert_allclose(noisy - langevin_step(y0, a * y0, step), step * noise, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("with_noise", [False, True])
def test_numpy_and_torch_forms_agree(with_noise: bool) -> None:
    rng = np.random.default_rng(2)
    y, g, n = (rng.normal(size=(2, 1, 8, 8)).astype(np.float32) for _ in range(3))
    noise_np = n if with_noise else None
    noise_t = torch.from_numpy(n) if with_noise else None
    out_np = langevin_step(y, g, 0.4, noise_np)
    out_t = langevin_step(torch.from_numpy(y), torch.from_numpy(g), 0.4, noise_t)
    assert isinstance(out_t, torch.Tensor) and isinstance(out_np, np.ndarray)
    np.testing.assert_allclose(out_t.numpy(), out_np, rtol=0, atol=1e-6)
