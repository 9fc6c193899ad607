"""The runtime's fixed-iteration Broyden solve against a dense textbook Broyden, step for step.

The kernel keeps J⁻¹ = −I + Σ u vᵀ as low-rank factors in a circular memory and saves one of the
three low-rank products per step by recurrence (salkit.kernels.broyden); the reference forms J⁻¹
as a dense matrix from the same (u, v) list each step, in float64, with the oldest pair dropped
when the memory is full. Memory < steps, so eviction is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest

from salkit.kernels.broyden import broyden

DIM = 12


def _problem(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((DIM, DIM))
    w *= 0.9 / np.linalg.norm(w, 2)
    inj = rng.standard_normal((batch, DIM))
    return lambda z: np.tanh(z @ w.T + inj)  # (B, D) → (B, D), contractive


def dense_broyden(f, z0: np.ndarray, steps: int, memory: int) -> list[np.ndarray]:
    """Iterates z_1 … z_T of Broyden's good method, J⁻¹ as a dense matrix, per sample."""
    out = []
    for b in range(z0.shape[0]):

        def g(z: np.ndarray, b: int = b) -> np.ndarray:  # f is row-wise: sample b's row of a batch
            rows = np.zeros_like(z0)
            rows[b] = z
            return f(rows)[b] - z

        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        z = z0[b].copy()
        gz = g(z)
        iterates = []
        for _ in range(steps):
            inv = -np.eye(DIM) + sum((np.outer(u, v) for u, v in pairs), np.zeros((DIM, DIM)))
            z_new = z - inv @ gz
            g_new = g(z_new)
            dz, dg = z_new - z, g_new - gz
            vt = dz @ inv
            u = (dz - inv @ dg) / (vt @ dg)
            pairs = (pairs + [(u, vt)])[-memory:]
            z, gz = z_new, g_new
            iterates.append(z.copy())
        out.append(np.stack(iterates))
    return [np.stack([o[k] for o in out]) for k in range(steps)]


@pytest.mark.parametrize("memory", [4, 30])
def test_fixed_iteration_solve_follows_dense_broyden(memory: int) -> None:
    f = _problem(batch=3)
    z0 = np.zeros((3, DIM))
    steps = 9
    reference = dense_broyden(f, z0, steps, memory)
    seen: list[np.ndarray] = []

    def recording(z: np.ndarray) -> np.ndarray:
        seen.append(z.copy())
        return f(z)

    z, stats = broyden(recording, z0, max_iter=steps, memory=memory, stop_mode="rel", fixed_iterations=True)
    assert stats["nstep"] == steps and len(seen) == steps + 1  # z0, then one f per step: no extra calls
    for k in range(steps):
        np.testing.assert_allclose(seen[k + 1], reference[k], rtol=1e-9, atol=1e-11)
    residuals = np.linalg.norm(f(z) - z, axis=1)
    assert residuals.max() < 1e-3 * np.linalg.norm(f(z0) - z0, axis=1).min()  # and it converges


def test_float32_solve_stays_float32_and_matches_float64() -> None:
    f = _problem(batch=2, seed=1)
    calls: list[np.dtype] = []

    def f32(z: np.ndarray) -> np.ndarray:
        calls.append(z.dtype)
        return f(z.astype(np.float64)).astype(np.float32)

    z32, _ = broyden(f32, np.zeros((2, DIM), np.float32), max_iter=8, memory=5, stop_mode="rel", fixed_iterations=True)
    z64, _ = broyden(f, np.zeros((2, DIM)), max_iter=8, memory=5, stop_mode="rel", fixed_iterations=True)
    assert z32.dtype == np.float32 and set(calls) == {np.dtype(np.float32)}  # no float64 round trips
    np.testing.assert_allclose(z32, z64, atol=1e-5)
