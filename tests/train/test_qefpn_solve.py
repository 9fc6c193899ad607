"""QE-FPN solving: implicit gradients (gradcheck, unrolled autograd), quasi-equilibrium definition,
memory independent of forward iterations."""

from __future__ import annotations

import pytest
import torch

from salkit.train.qefpn.solve import (
    SolverConfig,
    bernoulli_keep_mask,
    quasi_map,
    solve_implicit,
    solve_unrolled,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

B, D, X = 3, 5, 4
TIGHT = SolverConfig(f_max_iter=100, f_tol=1e-13, b_max_iter=100, b_tol=1e-13, memory=100, stop_mode="abs")


def _params(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, D, generator=g, dtype=torch.float64) * 0.4 / D**0.5  # contraction
    u = torch.randn(D, X, generator=g, dtype=torch.float64)
    x = torch.randn(B, X, generator=g, dtype=torch.float64)
    return w, u, x


def small_f(w: torch.Tensor, u: torch.Tensor, x: torch.Tensor):
    return lambda z: torch.tanh(z @ w.T + x @ u.T)


def test_implicit_gradient_passes_gradcheck() -> None:
    w, u, x = _params()

    def solution(w: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z, _ = solve_implicit(small_f(w, u, x), torch.zeros(B, D, dtype=torch.float64), TIGHT)
        return z

    inputs = tuple(t.clone().requires_grad_() for t in (w, u, x))
    assert torch.autograd.gradcheck(solution, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_implicit_gradient_equals_backprop_through_many_unrolled_steps() -> None:
    w, u, x = _params(1)
    target = torch.randn(B, D, dtype=torch.float64)
    grads = []
    for implicit in (True, False):
        wp = w.clone().requires_grad_()
        f = small_f(wp, u, x)
        if implicit:
            z, _ = solve_implicit(f, torch.zeros(B, D, dtype=torch.float64), TIGHT)
        else:
            z, _ = solve_unrolled(f, torch.zeros(B, D, dtype=torch.float64), layers=200)
        ((z - target) ** 2).sum().backward()
        grads.append(wp.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=1e-8)


def test_forward_solution_is_a_fixed_point_and_stats_are_reported() -> None:
    w, u, x = _params(2)
    f = small_f(w, u, x)
    with torch.no_grad():
        z, stats = solve_implicit(f, torch.zeros(B, D, dtype=torch.float64), TIGHT)
    torch.testing.assert_close(f(z), z, atol=1e-12, rtol=0)
    assert stats["iterations"].shape == (B,) and stats["residual"].shape == (B,)
    assert torch.all(stats["residual"] < 1e-11)


def _saved_bytes(f_max_iter: int) -> int:
    w, u, x = _params(3)
    wp = w.clone().requires_grad_()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    config = SolverConfig(f_max_iter=f_max_iter, f_tol=0.0, memory=f_max_iter, stop_mode="abs")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        z, stats = solve_implicit(small_f(wp, u, x), torch.zeros(B, D, dtype=torch.float64), config)
    assert stats["nstep"] == f_max_iter
    z.sum().backward()
    assert wp.grad is not None
    return total


def test_autograd_memory_does_not_grow_with_forward_iterations() -> None:
    assert _saved_bytes(3) == _saved_bytes(40) > 0


def test_quasi_solution_satisfies_its_definition() -> None:
    # a larger drop probability than the paper's so that the mask really drops entries
    w, u, x = _params(4)
    w = w * 4.0  # strongly nonlinear so J_f(ẑ)(z − ẑ) matters
    f = small_f(w, u, x)
    mask = bernoulli_keep_mask(torch.Size((B, D)), 0.4, torch.device("cpu"), torch.float64)
    assert 0 < int((mask == 0).sum()) < B * D
    with torch.no_grad():
        z, _ = solve_implicit(quasi_map(f, mask), torch.zeros(B, D, dtype=torch.float64), TIGHT)
    z_hat = z * mask
    # independent reference: the full Jacobian of f at ẑ, per sample (f acts row-wise)
    jac = torch.autograd.functional.jacobian(f, z_hat)  # (B, D, B, D)
    jac = torch.stack([jac[b, :, b, :] for b in range(B)])  # (B, D, D) per-sample blocks
    rhs = f(z_hat) + torch.einsum("bij,bj->bi", jac, z - z_hat)  # (B, D)
    torch.testing.assert_close(z, rhs, atol=1e-11, rtol=0)
    assert (f(z) - z).abs().max() > 1e-4  # a quasi-equilibrium, not the equilibrium


def test_quasi_map_with_nothing_dropped_is_f() -> None:
    w, u, x = _params(5)
    f = small_f(w, u, x)
    assert quasi_map(f, torch.ones(B, D, dtype=torch.float64)) is f
    mask = bernoulli_keep_mask(torch.Size((1000, 1000)), 5e-7, torch.device("cpu"), torch.float32)
    assert int((mask == 0).sum()) <= 10  # p = 5e-7 drops ~0.5 of a million entries


def test_quasi_implicit_gradient_passes_gradcheck() -> None:
    w, u, x = _params(6)
    mask = torch.ones(B, D, dtype=torch.float64)
    mask[0, 1] = mask[2, 3] = 0.0

    def solution(w: torch.Tensor) -> torch.Tensor:
        z, _ = solve_implicit(quasi_map(small_f(w, u, x), mask), torch.zeros(B, D, dtype=torch.float64), TIGHT)
        return z

    assert torch.autograd.gradcheck(solution, (w.clone().requires_grad_(),), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("layers", [1, 4])
def test_unrolled_applies_f_layers_times(layers: int) -> None:
    w, u, x = _params(7)
    f = small_f(w, u, x)
    z, stats = solve_unrolled(f, torch.zeros(B, D, dtype=torch.float64), layers)
    expected = torch.zeros(B, D, dtype=torch.float64)
    for _ in range(layers):
        expected = f(expected)
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(stats["residual"], (f(z) - z).norm(dim=1) / z.norm(dim=1))
