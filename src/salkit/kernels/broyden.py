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
Only operators shared by both libraries are used (batched ``@``, ``where``, arithmetic, in-place
operators and the ``out=`` forms of ``add`` / ``subtract`` / ``multiply`` / ``matmul``; batched
matmul rather than einsum, whose per-call overhead in torch dominated small solves), and torch is
imported only when a torch tensor is passed, so the runtime never loads it. A step allocates no
(B, D) array: its values go into buffers of a :class:`BroydenWorkspace`, which a caller solving
repeatedly keeps (the factors U, Vᵀ are (B, M, D) each, 79 MB per sample at 352² with M = 30).

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

from salkit.base.errors import SalkitError
from salkit.kernels._namespace import namespace_of

Array = Any  # numpy.ndarray or torch.Tensor
_EPS = 1e-9


class BroydenWorkspace:
    """Buffers a solve keeps for the next solve of the same shape, library, dtype and device.

    The low-rank factors U, Vᵀ are (B, M, D) each: 79 MB per factor per sample at 352² with
    M = 30. Allocated per solve, every page of them was faulted in afresh (glibc maps blocks that
    large anew each time), so a caller that solves repeatedly (the runtime, once per predict)
    passes one workspace per batch shape. Nothing is cleared between solves: a solve reads only the
    factor slots it has written (``[:used]``, and a slot it evicts only after writing it once) and
    writes every (B, D) buffer before reading it. The returned iterate is never a workspace buffer.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Array] = {}

    def take(self, name: str, shape: tuple[int, ...], like: Array) -> Array:
        """Buffer ``name`` of ``shape`` in like's library, dtype and device, uninitialised when new."""
        kept = self._buffers.get(name)
        if (kept is None or type(kept) is not type(like) or tuple(kept.shape) != shape or kept.dtype != like.dtype
                or getattr(kept, "device", None) != getattr(like, "device", None)):
            kept = self._buffers[name] = _empty(shape, like)
        return kept


def _empty(shape: tuple[int, ...], like: Array) -> Array:
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=like.dtype)
    return namespace_of(like).empty(shape, dtype=like.dtype, device=like.device)


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


def _sum_is_finite(x: Array, xp: types.ModuleType) -> bool:
    """True if every entry of x is finite, False if one may not be: a non-finite entry makes any sum
    or dot product over it non-finite; a sum that merely overflows sends the caller to its exact test."""
    return bool(xp.isfinite(x.sum()))


def _zero_non_finite(x: Array, xp: types.ModuleType) -> None:
    """x with its non-finite entries zeroed, in place. Almost always nothing is to be zeroed: one
    reduction decides, and the elementwise test (a (B, D) mask) is then skipped."""
    if not _sum_is_finite(x, xp):
        x[~xp.isfinite(x)] = 0


def _copy_rows(dst: Array, src: Array, rows: Array, xp: types.ModuleType) -> None:
    """dst[b] = src[b] for the rows b where ``rows`` (B,) is true, without a (B, D) temporary."""
    picked = np.flatnonzero(rows) if xp is np else rows.nonzero()[:, 0]
    for b in picked.tolist():
        dst[b] = src[b]


def _low_rank_products(us: Array, vts: Array, dz: Array, g: Array, vt_out: Array, inv_g_out: Array,
                       xp: types.ModuleType) -> None:
    """vt_out ← dzᵀ(−I + U Vᵀ) as a (B, D) row and inv_g_out ← (−I + U Vᵀ) g, into the given buffers.

    us, vts: (B, m, D) rows u_k, v_k; dz, g, vt_out, inv_g_out: (B, D). Each product reads both
    factors once: memory-bound in D."""
    u_dz = (us @ dz[:, :, None])[:, :, 0]  # (B, m, D) @ (B, D, 1) -> (B, m): u_k · dz
    xp.matmul(u_dz[:, None, :], vts, out=vt_out[:, None, :])  # (B, 1, m) @ (B, m, D) -> (B, 1, D): Σ_k (u_k·dz) v_k
    vt_out -= dz
    v_g = (vts @ g[:, :, None])[:, :, 0]  # (B, m, D) @ (B, D, 1) -> (B, m): v_k · g
    xp.matmul(v_g[:, None, :], us, out=inv_g_out[:, None, :])  # (B, 1, m) @ (B, m, D) -> (B, 1, D): Σ_k (v_k·g) u_k
    inv_g_out -= g


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
    workspace: BroydenWorkspace | None = None,
) -> tuple[Array, dict[str, Any]]:
    """Solve ``z = f(z)`` for a batch ``z0`` of shape ``(B, D)``; see the module doc for stats.

    ``f`` maps ``(B, D) -> (B, D)`` in the same library as ``z0``; its argument is a buffer of the
    solver, valid during the call, and its result is read at once (f may reuse one output buffer).
    The batch stops when every sample's lowest residual (``stop_mode`` "abs" or "rel") is below
    ``tol``; ``tol <= 0`` or ``fixed_iterations`` runs exactly ``max_iter`` steps. ``memory``
    (default ``max_iter``) is the number of low-rank updates kept. ``workspace``: buffers kept for
    the next solve (:class:`BroydenWorkspace`); without it every solve allocates its own.
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
    ws = BroydenWorkspace() if workspace is None else workspace

    def take(name: str, shape: tuple[int, ...] = (batch, dim)) -> Array:
        return ws.take(name, shape, z0)

    def g(z: Array) -> Array:
        return f(z) - z

    # The iterate and its residual g(z) = f(z) − z ping-pong between two buffers each; every other
    # (B, D) value of a step is written into a buffer of its own, so a step allocates no (B, D) array.
    z, z_next, gz, g_next = take("z"), take("z_next"), take("g"), take("g_next")
    dz, dg, inv_g, step = take("dz"), take("dg"), take("inv_g"), take("step")
    z[...] = z0
    xp.subtract(f(z), z, out=gz)
    f_evals = 1
    abs_res, rel_res = _residuals(z, gz, xp)
    abs_trace, rel_trace = [abs_res], [rel_res]
    lowest_z, lowest_abs, lowest_rel = _copy(z0), abs_res, rel_res
    lowest_step = _int_zeros(xp, batch, like=z)  # (B,)
    iterations = lowest_step + max_iter  # overwritten per sample when it first meets tol

    def key(a: Array, r: Array) -> Array:
        return a if stop_mode == "abs" else r

    met = key(lowest_abs, lowest_rel) < tol  # (B,) bool
    iterations = xp.where(met, lowest_step, iterations)
    us = take("us", (batch, memory, dim))  # (B, M, D) update vectors u
    vts = take("vts", (batch, memory, dim))  # (B, M, D) update vectors vᵀ
    step[...] = gz  # = −(−I)·g(z) with no updates yet: a plain fixed-point step
    nstep = 0
    while nstep < max_iter and (fixed or not bool(met.all())):
        if line_search:
            z_new, g_new, evals = _line_search(g, z, gz, step, xp)
            z_next[...], g_next[...] = z_new, g_new
        else:
            xp.add(z, step, out=z_next)
            xp.subtract(f(z_next), z_next, out=g_next)
            evals = 1
        f_evals += evals
        nstep += 1
        xp.subtract(z_next, z, out=dz)
        xp.subtract(g_next, gz, out=dg)
        z, z_next, gz, g_next = z_next, z, g_next, gz

        abs_res, rel_res = _residuals(z, gz, xp)
        abs_trace.append(abs_res)
        rel_trace.append(rel_res)
        better = key(abs_res, rel_res) < key(lowest_abs, lowest_rel)  # (B,); NaN is never better
        _copy_rows(lowest_z, z, better, xp)
        lowest_abs = xp.where(better, abs_res, lowest_abs)
        lowest_rel = xp.where(better, rel_res, lowest_rel)
        lowest_step = xp.where(better, lowest_step * 0 + nstep, lowest_step)
        newly_met = (key(abs_res, rel_res) < tol) & ~met
        iterations = xp.where(newly_met, iterations * 0 + nstep, iterations)
        met = met | newly_met

        # Sherman–Morrison: J⁻¹ ← J⁻¹ + (dz − J⁻¹dg)(dzᵀJ⁻¹) / (dzᵀJ⁻¹dg). Only the slots
        # written so far take part (``[:used]``; the others hold whatever an earlier solve left). The
        # products are memory-bound in D (at 352² a factor is M·D ≈ 30 × 658k floats per sample), so
        # an iteration makes two low-rank products, not three: J⁻¹g_new once, and J⁻¹dg = J⁻¹g_new −
        # J⁻¹g_old = J⁻¹g_new + step (step = −J⁻¹g_old); the next step is J⁻¹g_new corrected by the
        # slot just written (and by the one it evicted), without a third product.
        used = min(nstep - 1, memory)
        slot = (nstep - 1) % memory
        evicting = nstep > memory  # the slot still holds an update of the old J⁻¹
        # The new update (u, vᵀ) is built in its slot, or beside it while the slot is still read.
        u = take("u_spare") if evicting else us[:, slot]  # (B, D)
        vt = take("vt_spare") if evicting else vts[:, slot]  # (B, D)
        _low_rank_products(us[:, :used], vts[:, :used], dz, gz, vt, inv_g, xp)  # dzᵀ J⁻¹, J⁻¹ g_new (old J⁻¹)
        denom = _dot(vt, dg, xp)[:, None]  # (B, 1)
        xp.subtract(dz, inv_g, out=u)  # dz − J⁻¹dg = dz − J⁻¹g_new − step
        u -= step
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is zeroed just below
            u /= denom
        if evicting:  # the slot's old update leaves J⁻¹: take its share out of J⁻¹ g_new
            inv_g -= us[:, slot] * _dot(vts[:, slot], gz, xp)[:, None]
            us[:, slot], vts[:, slot] = u, vt
            u, vt = us[:, slot], vts[:, slot]
        _zero_non_finite(u, xp)
        vt_g = _dot(vt, gz, xp)  # (B,); a non-finite entry of vt would make it non-finite
        if not _sum_is_finite(vt_g, xp):
            _zero_non_finite(vt, xp)
            vt_g = _dot(vt, gz, xp)
        # step = −(J⁻¹ g_new + u (vᵀ·g_new)) = −J⁻¹ g_new with the new J⁻¹, written as
        # u·(−vᵀg) − J⁻¹g_new: the same floats, no (B, D) temporary.
        xp.multiply(u, -vt_g[:, None], out=step)
        step -= inv_g
        _zero_non_finite(step, xp)

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
    workspace: BroydenWorkspace | None = None,
) -> tuple[Array, dict[str, Array]]:
    """The serving solve (``runtime/loops_qefpn.py`` and the Triton model): exactly ``iterations``
    Broyden steps from ``z0`` (B, D), whatever the residuals, so its cost does not depend on the
    data (a fixed loop is what a CUDA graph or a Triton model can capture).

    Returns the lowest-residual iterate and, per sample, ``iterations`` (B,): the first step whose
    residual (``stop_mode``) met ``tol``, ``iterations`` if none did; ``residual`` (B,): the relative
    residual ‖f(z) − z‖ / ‖z‖ of the returned iterate. Arrays stay in z0's library and precision.
    A caller that solves repeatedly passes a ``workspace`` per batch shape (see broyden).
    """
    z, stats = broyden(f, z0, max_iter=iterations, tol=tol, memory=memory, stop_mode=stop_mode, fixed_iterations=True,
                       workspace=workspace)
    return z, {"iterations": stats["iterations"], "residual": stats["residual"]}
