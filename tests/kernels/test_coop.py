"""kernels.coop against the plain autograd reference (tests/coop_reference.py), with numpy arrays
and torch tensors, allocating and buffered ops; the seed convention; the chain's options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.kernels import coop
from salkit.kernels.entropy import uncertainty_maps
from salkit.kernels.langevin import langevin_chain, langevin_step
from tests.coop_reference import cooperative_reference

B, N, S, D = 2, 3, 8, 4
STEP = 0.8
_rng = np.random.default_rng(0)
W = _rng.standard_normal(D)  # latent → logit offset
A = _rng.standard_normal((1, 1, S, S))  # where the latent shows in the map
X = _rng.standard_normal((B, 3, S, S))
LATENTS = _rng.standard_normal((N, B, D))
NOISE = _rng.standard_normal((3, B, 1, S, S))
WEIGHT, QUAD = 4.0, -3.0  # U(y, x) = Σ WEIGHT·x₀·s + QUAD·s², s = sigmoid(y): strong enough to move maps


def torch_generator(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return 2.0 * x[:, :1] + (h @ torch.as_tensor(W))[:, None, None, None] * torch.as_tensor(A)  # (B,1,S,S)


def torch_energy(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(y)
    return (WEIGHT * x[:, :1] * s + QUAD * s * s).flatten(1).sum(1)  # (B,)


def numpy_sample_probs(latents: np.ndarray) -> np.ndarray:
    logits = 2.0 * X[None, :, :1] + (latents @ W)[:, :, None, None, None] * A  # (N,B,1,S,S)
    return 1.0 / (1.0 + np.exp(-logits))


def numpy_energy_grad(y: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-y))
    return (WEIGHT * X[:, :1] + 2.0 * QUAD * s) * s * (1.0 - s)  # ∂U/∂y in closed form


def torch_sample_probs(latents: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(X)
    return torch.sigmoid(torch.stack([torch_generator(x, h) for h in latents]))  # (N,B,1,S,S)


def torch_energy_grad(y: torch.Tensor) -> torch.Tensor:
    y = y.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(torch_energy(y, torch.as_tensor(X)).sum(), y)
    return g


def _reference(noise: np.ndarray | None, steps: int = 3):
    return cooperative_reference(torch_generator, torch_energy, X, LATENTS, steps, STEP, noise)


def _buffer_ops(xp, dtype):
    if xp is torch:
        return coop.BufferOps(torch, lambda shape: torch.empty(shape, dtype=dtype), (B, 1, S, S))
    return coop.BufferOps(np, lambda shape: np.empty(shape, dtype), (B, 1, S, S))


@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize("ops", ["array", "buffer"])
def test_numpy_predict_equals_the_autograd_reference(with_noise: bool, ops: str) -> None:
    noise = NOISE if with_noise else None
    chosen = coop.ARRAY_OPS if ops == "array" else _buffer_ops(np, np.float64)
    out = coop.predict(numpy_sample_probs, LATENTS, numpy_energy_grad, steps=3, step_size=STEP, noise=noise, ops=chosen)
    expected, probs = _reference(noise)
    assert isinstance(out["saliency"], np.ndarray) and out["saliency"].shape == (B, 1, S, S)
    np.testing.assert_allclose(out["saliency"], expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out["generator"], probs.mean(0).numpy(), rtol=0, atol=1e-12)
    ref_unc = uncertainty_maps(probs.numpy())
    for key in ("predictive", "aleatoric", "epistemic"):
        np.testing.assert_allclose(out[key], ref_unc[key], rtol=0, atol=1e-10)
    assert np.abs(out["saliency"] - out["generator"]).mean() > 0.05  # the descent really moved the maps


@pytest.mark.parametrize("with_noise", [False, True])
@pytest.mark.parametrize("ops", ["array", "buffer"])
def test_torch_predict_with_autograd_callables_equals_the_reference(with_noise: bool, ops: str) -> None:
    noise = torch.from_numpy(NOISE) if with_noise else None
    chosen = coop.ARRAY_OPS if ops == "array" else _buffer_ops(torch, torch.float64)
    out = coop.predict(torch_sample_probs, torch.from_numpy(LATENTS), torch_energy_grad, steps=3, step_size=STEP,
                       noise=noise, uncertainty=False, ops=chosen)
    assert set(out) == {"saliency", "generator"} and isinstance(out["saliency"], torch.Tensor)
    expected, _ = _reference(NOISE if with_noise else None)
    np.testing.assert_allclose(out["saliency"].numpy(), expected, rtol=0, atol=1e-10)


def test_refine_from_saturated_maps_equals_the_reference() -> None:
    maps = np.random.default_rng(1).uniform(0, 1, (B, 1, S, S))
    maps[0, 0, :2], maps[1, 0, :2] = 0.0, 1.0  # clipped to [eps, 1 − eps], not ±inf
    expected, _ = cooperative_reference(torch_generator, torch_energy, X, None, 4, STEP, start=maps)
    for ops in (coop.ARRAY_OPS, _buffer_ops(np, np.float64)):
        refined = coop.refine(maps.copy(), numpy_energy_grad, steps=4, step_size=STEP, ops=ops)
        assert np.isfinite(refined).all()
        np.testing.assert_allclose(refined, expected, rtol=0, atol=1e-10)
    still = coop.refine(maps, numpy_energy_grad, steps=0, step_size=STEP)
    np.testing.assert_allclose(still, np.clip(maps, coop.LOGIT_EPS, 1 - coop.LOGIT_EPS), rtol=1e-9)


@pytest.mark.parametrize("xp", [np, torch])
def test_buffer_ops_are_bit_identical_to_the_allocating_ops_in_float32(xp) -> None:
    rng = np.random.default_rng(2)
    p, g, xi = (rng.uniform(0, 1, (B, 1, S, S)).astype(np.float32) for _ in range(3))
    probs = rng.uniform(0, 1, (N, B, 1, S, S)).astype(np.float32)
    wrap = torch.from_numpy if xp is torch else np.asarray
    p, g, xi, probs = wrap(p), wrap(g), wrap(xi), wrap(probs)
    ops = _buffer_ops(xp, torch.float32 if xp is torch else np.float32)
    same = lambda a, b: np.array_equal(np.asarray(a), np.asarray(b))
    assert same(ops.mean(probs), coop.ARRAY_OPS.mean(probs))
    y0 = ops.logit(p, 1e-3)
    assert y0 is ops.y[0] and same(y0, coop.ARRAY_OPS.logit(p, 1e-3))
    y1 = ops.step(y0, g, 0.37, xi)
    assert y1 is ops.y[1] and same(y1, langevin_step(coop.ARRAY_OPS.logit(p, 1e-3), g, 0.37, xi))
    y2 = ops.step(y1, g, 0.37)
    assert y2 is ops.y[0] and same(y2, langevin_step(y1, g, 0.37))
    assert same(ops.sigmoid(y2), coop.ARRAY_OPS.sigmoid(y2))


def test_the_seed_convention() -> None:
    latents, noise = coop.random_inputs(5, samples=N, batch=B, latent_dim=D, steps=2, size=S, noise=True)
    rng = np.random.default_rng(5)
    assert np.array_equal(latents, rng.standard_normal((N, B, D), dtype=np.float32)) and latents.dtype == np.float32
    assert np.array_equal(noise, rng.standard_normal((2, B, 1, S, S), dtype=np.float32))
    quiet, none = coop.random_inputs(5, samples=N, batch=B, latent_dim=D, steps=2, size=S, noise=False)
    assert none is None and np.array_equal(quiet, latents)  # noise drawn after: the latents do not depend on it


def test_the_chain_takes_indexed_or_drawn_noise_and_sees_every_iterate() -> None:
    y0 = np.linspace(-1, 1, 6)
    grad = lambda y: 2.0 * y
    seen: list[tuple[int, np.ndarray]] = []
    kicks = np.random.default_rng(3).standard_normal((3, 6))
    indexed = langevin_chain(grad, y0, 3, 0.5, kicks, after_step=lambda k, y: (seen.append((k, y)), y)[1])
    drawn = langevin_chain(grad, y0, 3, 0.5, lambda k: kicks[k])
    expected = y0
    for k in range(3):
        expected = expected - 0.125 * 2.0 * expected + 0.5 * kicks[k]
    np.testing.assert_allclose(indexed, expected, rtol=1e-12)
    np.testing.assert_array_equal(drawn, indexed)
    assert [k for k, _ in seen] == [0, 1, 2] and seen[-1][1] is indexed
    clamped = langevin_chain(grad, y0, 2, 0.5, after_step=lambda k, y: np.clip(y, -0.1, 0.1))
    assert np.abs(clamped).max() <= 0.1
