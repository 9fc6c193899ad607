"""Solving QE-FPN's pyramid state: unrolled, equilibrium (DEQ) and quasi-equilibrium.

Quasi-equilibrium — the reading implemented
-------------------------------------------
The paper perturbs the state, ẑ = z ⊙ m with m ~ Bernoulli(1 − p) (drop probability p, default
5e-7), expands f around ẑ to first order (Eq. 9: f(z) ≈ f(ẑ) + J_f(ẑ)(z − ẑ)) and substitutes this
into the equilibrium condition z = f(z) (Eq. 3). Printed literally Eq. 10 restates the Taylor
identity, which constrains nothing; the text says the expansion is substituted into Eq. 3, so we
solve

    z = h(z),   h(z) = f(ẑ) + J_f(ẑ)(z − ẑ),   ẑ = z ⊙ m,

with one mask m drawn per solve (a fixed h for the solver), and J_f(ẑ)(z − ẑ) a Jacobian–vector
product from forward-mode AD (``torch.func.jvp``), never finite differences. With m = 1 (eval
mode, and in training whenever no entry is dropped — almost always at p = 5e-7) h = f exactly and
the quasi solve is the plain equilibrium solve; exported graphs therefore contain only f.

Implicit backward
-----------------
The forward solve runs without a graph. Then h(z*) is evaluated once more with grad enabled at a
detached z*, and an autograd function passes the incoming gradient g through the solution of
y = (∂h/∂z)ᵀ y + g (Eq. 5–6), found by Broyden from y = 0 with vector–Jacobian products of that
one graph. Memory is one graph of h plus the Broyden buffers — independent of the number of
forward iterations. For the quasi map, ∂h/∂z includes the second-order term through the JVP, since
h(z*) is differentiated as it is; at m = 1 it is exactly J_f.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from salkit.kernels.broyden import broyden

Map = Callable[[torch.Tensor], torch.Tensor]
SOLVERS = ("quasi", "equilibrium", "unrolled")


@dataclass
class SolverConfig:
    f_max_iter: int = 30
    f_tol: float = 1e-3
    b_max_iter: int = 40
    b_tol: float = 1e-4
    memory: int = 30
    stop_mode: str = "rel"
    unrolled_layers: int = 5
    drop_prob: float = 5e-7


def bernoulli_keep_mask(
    shape: torch.Size, drop_prob: float, device: torch.device, dtype: torch.dtype,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """m with P(m = 0) = drop_prob, else 1 (no rescaling: ẑ is a perturbation, not dropout).

    Drawn on the CPU from ``generator`` (the global generator if None), then moved to ``device``.
    """
    return (torch.rand(shape, generator=generator) >= drop_prob).to(device=device, dtype=dtype)


def quasi_map(f: Map, mask: torch.Tensor) -> Map:
    """h(z) = f(ẑ) + J_f(ẑ)(z − ẑ) with ẑ = z ⊙ mask; the JVP by forward-mode AD."""
    if bool((mask == 1).all()):
        return f  # ẑ = z: the correction term is exactly zero

    def h(z: torch.Tensor) -> torch.Tensor:
        z_hat = z * mask
        f_hat, jvp = torch.func.jvp(f, (z_hat,), (z - z_hat,))
        return f_hat + jvp

    return h


def _relative_residual(fz: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """‖f(z) − z‖ / ‖z‖ per sample: (B, D) -> (B,)."""
    return (fz - z).norm(dim=1) / (z.norm(dim=1) + 1e-9)


def solve_unrolled(f: Map, z0: torch.Tensor, layers: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """``layers`` weight-tied applications of f with ordinary backprop."""
    z = z0
    for _ in range(layers):
        z = f(z)
    with torch.no_grad():
        residual = _relative_residual(f(z), z)
    iterations = torch.full((z.shape[0],), layers, dtype=torch.int64, device=z.device)
    return z, {"iterations": iterations, "residual": residual}


class _ImplicitGradient(torch.autograd.Function):
    """Identity forward; backward returns the solution y of y = (∂h/∂z)ᵀ y + grad."""

    @staticmethod
    def forward(ctx: Any, h_z: torch.Tensor, solve_adjoint: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.solve_adjoint = solve_adjoint
        return h_z.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.solve_adjoint(grad), None


def solve_implicit(
    h: Map, z0: torch.Tensor, config: SolverConfig, fixed_iterations: bool = False
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Broyden forward solve of z = h(z); gradients by the implicit function theorem.

    ``fixed_iterations`` runs exactly ``f_max_iter`` steps (the runtime's solve); ``iterations``
    then still reports the first step that met ``f_tol``, as the runtime does.
    """
    with torch.no_grad():
        z_star, stats = broyden(
            h, z0, max_iter=config.f_max_iter, tol=config.f_tol, memory=config.memory,
            stop_mode=config.stop_mode, fixed_iterations=fixed_iterations,
        )
    result = {"iterations": stats["iterations"], "residual": stats["residual"], "nstep": stats["nstep"]}
    if not torch.is_grad_enabled():
        return z_star, result
    z_leaf = z_star.detach().requires_grad_()
    h_z = h(z_leaf)  # one graph of h at the solution: carries ∂h/∂θ and ∂h/∂z

    def solve_adjoint(grad: torch.Tensor) -> torch.Tensor:
        def adjoint_map(y: torch.Tensor) -> torch.Tensor:
            (vjp,) = torch.autograd.grad(h_z, z_leaf, y, retain_graph=True)
            return vjp + grad

        y, b_stats = broyden(
            adjoint_map, torch.zeros_like(grad), max_iter=config.b_max_iter, tol=config.b_tol,
            memory=config.memory, stop_mode=config.stop_mode,
        )
        result["backward_nstep"] = b_stats["nstep"]
        result["backward_residual"] = b_stats["residual"]
        return y

    return _ImplicitGradient.apply(h_z, solve_adjoint), result
