"""Batched Broyden root finding for fixed points ``z = f(z)``, one function for numpy and torch.

The solver finds a root of ``g(z) = f(z) − z`` with Broyden's "good" method, keeping the
inverse Jacobian of ``g`` as ``−I + U·Vᵀ`` with low-rank factors stored per sample
(Sherman–Morrison updates), as the DEQ reference implementations do. Details that matter:

* The first step is a plain fixed-point step (``−I`` applied to ``−g`` gives ``z + g = f(z)``).
* Update vectors that come out non-finite (0/0 when a sample stops moving) are zeroed, so a
  converged or stuck sample does not poison the batch.
* ``memory`` columns are kept in a circular buffer: step ``k`` writes slot ``k mod memory``,
  overwriting the oldest update once the buffer is full (memory is capped, not linear in steps).
* The returned iterate is, per sample, the **lowest-residual** iterate seen (by ``stop_mode``),
  not the last one: Broyden's residual is not monotone.
* ``tol=0`` (or ``fixed_iterations=True``) runs exactly ``max_iter`` steps: the runtime's
  fixed-iteration solve, whose cost must not depend on the data.

Arrays stay in their own library: numpy in, numpy out; torch in (any device/dtype), torch out.
Only operators shared by both libraries are used (batched ``@``, ``where``, arithmetic; batched
matmul rather than einsum, whose per-call overhead in torch dominated small solves), and torch is
imported only when a torch tensor is passed, so the runtime never loads it.

Stats (all per-sample values are arrays of the input's library, shape ``(B,)``):

``abs_trace`` / ``rel_trace``
    lists of ``(B,)`` residuals ``‖g(z_k)‖`` and ``‖g(z_k)‖ / (‖z_k‖ + eps)``, entry 0 for ``z0``,
    entry ``k`` after step ``k``.
``abs_lowest`` / ``rel_lowest``
    both residuals of the returned (lowest) iterate.
``residual``
    alias of ``rel_lowest``: the final relative residual ``‖f(z) − z‖ / ‖z‖``.
``lowest_step``
    step index (0 = ``z0``) of the returned iterate.
``iterations``
    per sample, the first step whose residual fell below ``tol`` (``nstep`` if it never did).
``nstep``
    steps taken by the batch (an int); ``f_evals`` counts calls of ``f`` (line search adds some).
"""

from __future__ import annotations

import types
from typing import Any, Callable

import numpy as np

from salkit.kernels._namespace import namespace_of
from salkit.kernels.errors import SalkitError

Array = Any  # numpy.ndarray or torch.Tensor
_EPS = 1e-9


def _zeros(xp: types.ModuleType, shape: tuple[int, ...], like: Array) -> Array:
    if xp is np:
        return np.zeros(shape, dtype=like.dtype)
    return xp.zeros(shape, dtype=like.dtype, device=like.device)


def _int_zeros(xp: types.ModuleType, n: int, like: Array) -> Array:
    if xp is np:
        return np.zeros(n, dtype=np.int64)
    return xp.zeros(n, dtype=xp.int64, device=like.device)


def _copy(x: Array) -> Array:
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


def _dot(a: Array, b: Array, xp: types.ModuleType) -> Array:
    """Row dot products: (B, D)·(B, D) -> (B,); numpy's einsum makes no (B, D) temporary."""
    if xp is np:
        return np.einsum("bd,bd->b", a, b)
    return (a * b).sum(-1)


def _norm(x: Array, xp: types.ModuleType) -> Array:
    """Row norms: (B, D) -> (B,)."""
    return xp.sqrt(_dot(x, x, xp))


def _finite_or_zero(x: Array, xp: types.ModuleType) -> Array:
    """x with non-finite entries zeroed. One reduction decides: almost always nothing is to be zeroed,
    and the elementwise test (three (B, D) temporaries) is then skipped."""
    if bool(xp.isfinite(x.sum())):
        return x
    return xp.where(xp.isfinite(x), x, xp.zeros_like(x))


def _inv_jacobian_times(us: Array, vts: Array, x: Array, xp: types.ModuleType) -> Array:
    """(−I + U Vᵀ) x.  us, vts: (B, M, D) rows u_m, v_m; x: (B, D) -> (B, D)."""
    vt_x = vts @ x[:, :, None]  # (B, M, D) @ (B, D, 1) -> (B, M, 1): v_m · x
    out = (vt_x[:, :, 0][:, None, :] @ us)[:, 0, :]  # (B, 1, M) @ (B, M, D) -> (B, D): Σ_m (v_m·x) u_m
    out -= x
    return out


def _times_inv_jacobian(us: Array, vts: Array, x: Array, xp: types.ModuleType) -> Array:
    """xᵀ (−I + U Vᵀ), returned as a (B, D) row.  us, vts: (B, M, D); x: (B, D)."""
    u_x = us @ x[:, :, None]  # (B, M, D) @ (B, D, 1) -> (B, M, 1): u_m · x
    out = (u_x[:, :, 0][:, None, :] @ vts)[:, 0, :]  # (B, 1, M) @ (B, M, D) -> (B, D): Σ_m (u_m·x) v_m
    out -= x
    return out


def _residuals(z: Array, gz: Array, xp: types.ModuleType) -> tuple[Array, Array]:
    abs_res = _norm(gz, xp)  # (B,)
    return abs_res, abs_res / (_norm(z, xp) + _EPS)


def _line_search(
    g: Callable[[Array], Array], z: Array, gz: Array, step: Array, xp: types.ModuleType, tries: int = 4
) -> tuple[Array, Array, int]:
    """Per-sample backtracking on ‖g‖² (Armijo); a sample with no acceptable length takes the full
    step, as the DEQ reference does: Broyden's direction need not descend on ‖g‖²."""
    old = (gz * gz).sum(-1)  # (B,)
    z_full = z + step
    g_full = g(z_full)
    evals = 1
    scale = xp.ones_like(gz[:, :1])  # (B, 1) step length per sample
    z_new, g_new = z_full, g_full
    bad = ~((g_full * g_full).sum(-1) <= old * (1.0 - 1e-4))  # (B,); NaN counts as bad
    for _ in range(tries):
        if not bool(bad.any()):
            break
        scale = xp.where(bad[:, None], scale * 0.5, scale)
        z_try = z + scale * step
        g_try = g(z_try)
        evals += 1
        z_new = xp.where(bad[:, None], z_try, z_new)
        g_new = xp.where(bad[:, None], g_try, g_new)
        bad = bad & ~((g_try * g_try).sum(-1) <= old * (1.0 - 1e-4 * scale[:, 0]))
    z_new = xp.where(bad[:, None], z_full, z_new)
    g_new = xp.where(bad[:, None], g_full, g_new)
    return z_new, g_new, evals


def broyden(
    f: Callable[[Array], Array],
    z0: Array,
    max_iter: int = 30,
    tol: float = 1e-3,
    memory: int | None = None,
    stop_mode: str = "abs",
    line_search: bool = False,
    fixed_iterations: bool = False,
) -> tuple[Array, dict[str, Any]]:
    """Solve ``z = f(z)`` for a batch ``z0`` of shape ``(B, D)``; see the module doc for stats.

    ``f`` maps ``(B, D) -> (B, D)`` in the same library as ``z0``. The batch stops when every
    sample's lowest residual (``stop_mode`` "abs" or "rel") is below ``tol``; ``tol <= 0`` or
    ``fixed_iterations`` runs exactly ``max_iter`` steps. ``memory`` (default ``max_iter``) is the
    number of low-rank updates kept.
    """
    if getattr(z0, "ndim", None) != 2:
        raise SalkitError(f"broyden expects z0 of shape (B, D), got shape {getattr(z0, 'shape', None)}")
    if stop_mode not in ("abs", "rel"):
        raise SalkitError(f"stop_mode must be 'abs' or 'rel', got {stop_mode!r}")
    if max_iter < 0:
        raise SalkitError(f"max_iter must be >= 0, got {max_iter}")
    memory = max_iter if memory is None else memory
    if memory < 1:
        raise SalkitError(f"memory must be >= 1, got {memory}")
    xp = namespace_of(z0)
    fixed = fixed_iterations or tol <= 0
    batch, dim = z0.shape

    def g(z: Array) -> Array:
        return f(z) - z

    z = _copy(z0)
    gz = g(z)
    f_evals = 1
    abs_res, rel_res = _residuals(z, gz, xp)
    abs_trace, rel_trace = [abs_res], [rel_res]
    lowest_z, lowest_abs, lowest_rel = _copy(z), abs_res, rel_res
    lowest_step = _int_zeros(xp, batch, like=z)  # (B,)
    iterations = lowest_step + max_iter  # overwritten per sample when it first meets tol

    def key(a: Array, r: Array) -> Array:
        return a if stop_mode == "abs" else r

    met = key(lowest_abs, lowest_rel) < tol  # (B,) bool
    iterations = xp.where(met, lowest_step, iterations)
    us = _zeros(xp, (batch, memory, dim), like=z)  # (B, M, D) update vectors u
    vts = _zeros(xp, (batch, memory, dim), like=z)  # (B, M, D) update vectors vᵀ
    step = gz  # = −(−I)·g(z) with no updates yet: a plain fixed-point step
    nstep = 0
    while nstep < max_iter and (fixed or not bool(met.all())):
        if line_search:
            z_new, g_new, evals = _line_search(g, z, gz, step, xp)
        else:
            z_new = z + step
            g_new = g(z_new)
            evals = 1
        f_evals += evals
        nstep += 1
        dz, dg = z_new - z, g_new - gz  # (B, D) each
        z, gz = z_new, g_new

        abs_res, rel_res = _residuals(z, gz, xp)
        abs_trace.append(abs_res)
        rel_trace.append(rel_res)
        better = key(abs_res, rel_res) < key(lowest_abs, lowest_rel)  # (B,); NaN is never better
        lowest_z[better] = z[better]  # in place: only the rows that improved are copied
        lowest_abs = xp.where(better, abs_res, lowest_abs)
        lowest_rel = xp.where(better, rel_res, lowest_rel)
        lowest_step = xp.where(better, lowest_step * 0 + nstep, lowest_step)
        newly_met = (key(abs_res, rel_res) < tol) & ~met
        iterations = xp.where(newly_met, iterations * 0 + nstep, iterations)
        met = met | newly_met

        # Sherman–Morrison: J⁻¹ ← J⁻¹ + (dz − J⁻¹dg)(dzᵀJ⁻¹) / (dzᵀJ⁻¹dg). Only the slots
        # written so far take part: the others are zero. The products are memory-bound in D (at
        # 352² a factor is M·D ≈ 30 × 658k floats per sample), so an iteration makes two low-rank
        # products, not three: J⁻¹g_new once, and J⁻¹dg = J⁻¹g_new − J⁻¹g_old = J⁻¹g_new + step
        # (step = −J⁻¹g_old); the next step is J⁻¹g_new corrected by the slot just written (and
        # by the one it evicted), without a third product.
        used = min(nstep - 1, memory)
        vt = _times_inv_jacobian(us[:, :used], vts[:, :used], dz, xp)  # (B, D): dzᵀ J⁻¹
        inv_g = _inv_jacobian_times(us[:, :used], vts[:, :used], gz, xp)  # (B, D): J⁻¹ g_new, old J⁻¹
        denom = _dot(vt, dg, xp)[:, None]  # (B, 1)
        u = dz - inv_g  # (B, D): dz − J⁻¹dg = dz − J⁻¹g_new − step, built in place
        u -= step
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is zeroed just below
            u /= denom
        slot = (nstep - 1) % memory
        if nstep > memory:  # the slot's old update leaves J⁻¹: take its share out of J⁻¹ g_new
            inv_g -= us[:, slot] * _dot(vts[:, slot], gz, xp)[:, None]
        us[:, slot] = _finite_or_zero(u, xp)
        vts[:, slot] = _finite_or_zero(vt, xp)
        inv_g += us[:, slot] * _dot(vts[:, slot], gz, xp)[:, None]  # J⁻¹ g_new with the new J⁻¹
        inv_g *= -1
        step = _finite_or_zero(inv_g, xp)  # (B, D): −J⁻¹ g_new

    stats = {
        "abs_trace": abs_trace,
        "rel_trace": rel_trace,
        "abs_lowest": lowest_abs,
        "rel_lowest": lowest_rel,
        "residual": lowest_rel,
        "lowest_step": lowest_step,
        "iterations": iterations,
        "nstep": nstep,
        "f_evals": f_evals,
    }
    return lowest_z, stats


def solve_fixed(
    f: Callable[[Array], Array],
    z0: Array,
    iterations: int,
    *,
    memory: int | None = None,
    tol: float = 1e-3,
    stop_mode: str = "rel",
) -> tuple[Array, dict[str, Array]]:
    """The serving solve (``runtime/loops_qefpn.py`` and the Triton model): exactly ``iterations``
    Broyden steps from ``z0`` (B, D), whatever the residuals, so its cost does not depend on the
    data (a fixed loop is what a CUDA graph or a Triton model can capture).

    Returns the lowest-residual iterate and, per sample, ``iterations`` (B,): the first step whose
    residual (``stop_mode``) met ``tol``, ``iterations`` if none did; ``residual`` (B,): the relative
    residual ‖f(z) − z‖ / ‖z‖ of the returned iterate. Arrays stay in z0's library and precision.
    """
    z, stats = broyden(f, z0, max_iter=iterations, tol=tol, memory=memory, stop_mode=stop_mode, fixed_iterations=True)
    return z, {"iterations": stats["iterations"], "residual": stats["residual"]}
