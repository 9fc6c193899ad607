"""Broyden kernel: against SciPy and closed-form fixed points, lowest-residual rule, numpy == torch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from salkit.base.errors import SalkitError
from salkit.kernels.broyden import BroydenWorkspace, broyden, solve_fixed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RNG = np.random.default_rng(1234)



B, D = 4, 6
A = RNG.normal(size=(D, D)) / np.sqrt(D) * 0.8  # contraction-ish coupling
C = RNG.normal(size=(B, D))


def tanh_system(z):
    return np.tanh(z @ A.T + C)


def cos_system(z):
    return 0.7 * np.cos(z @ A.T) + 0.3 * C


def cubic_system(z):
    return 0.5 * (z @ A.T) - 0.1 * z**3 + C


SYSTEMS = {"tanh": tanh_system, "cos": cos_system, "cubic": cubic_system}


def _scipy_root(f, z0: np.ndarray) -> np.ndarray:
    rows = []
    for b in range(z0.shape[0]):
        def g(x, b=b):
            full = np.zeros_like(z0)
            full[b] = x
            return f(full)[b] - x  # rows are independent: other rows do not influence row b
        sol = scipy.optimize.root(g, z0[b], method="broyden1", options={"fatol": 1e-12, "maxiter": 500})
        assert sol.success, sol.message
        rows.append(sol.x)
    return np.stack(rows)


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_matches_scipy_broyden1_batched(name: str) -> None:
    f = SYSTEMS[name]
    z0 = np.zeros((B, D))
    z, stats = broyden(f, z0, max_iter=100, tol=1e-11)
    expected = _scipy_root(f, z0)
    np.testing.assert_allclose(z, expected, atol=1e-8)
    assert np.all(stats["abs_lowest"] < 1e-11)
    assert np.all(stats["iterations"] <= stats["nstep"])
    # residual stat is ‖f(z) − z‖ / ‖z‖ of the returned iterate
    np.testing.assert_allclose(
        stats["residual"], np.linalg.norm(f(z) - z, axis=1) / (np.linalg.norm(z, axis=1) + 1e-9), rtol=1e-6, atol=1e-15
    )


def test_linear_fixed_point_closed_form() -> None:
    m = RNG.normal(size=(D, D)) / np.sqrt(D) * 0.9
    z_star = np.linalg.solve(np.eye(D) - m, C.T).T  # (B, D): z = M z + c
    z, stats = broyden(lambda z: z @ m.T + C, np.zeros((B, D)), max_iter=2 * D + 2, tol=1e-10)
    np.testing.assert_allclose(z, z_star, atol=1e-8)
    # Broyden's method solves a D-dimensional linear system in at most 2D steps (Gay, 1979)
    assert stats["nstep"] <= 2 * D + 1


def test_first_step_is_a_plain_fixed_point_step() -> None:
    seen = []

    def f(z):
        seen.append(z.copy())
        return tanh_system(z)

    z0 = RNG.normal(size=(B, D))
    broyden(f, z0, max_iter=1, tol=0)
    np.testing.assert_allclose(seen[1], tanh_system(z0), atol=1e-15)


def test_returns_the_lowest_residual_iterate_per_sample() -> None:
    # a non-contractive map: Broyden's residual is far from monotone over a few steps
    a = RNG.normal(size=(D, D)) * 1.5
    c = RNG.normal(size=(B, D))
    iterates = []

    def f(z):
        iterates.append(z.copy())
        return np.sin(z @ a.T) + c

    z, stats = broyden(f, np.zeros((B, D)), max_iter=12, tol=0)
    trace = np.stack(stats["abs_trace"])  # (steps + 1, B)
    best = trace.argmin(axis=0)  # (B,)
    assert np.any(best < stats["nstep"]), "test needs a sample whose last iterate is not its best"
    np.testing.assert_array_equal(stats["lowest_step"], best)
    for b in range(B):
        np.testing.assert_array_equal(z[b], iterates[best[b]][b])
        assert stats["abs_lowest"][b] == trace[best[b], b]


def test_tol_zero_runs_exactly_max_iter_steps() -> None:
    calls = []
    z, stats = broyden(lambda z: calls.append(1) or tanh_system(z), np.zeros((B, D)), max_iter=7, tol=0)
    assert stats["nstep"] == 7 and len(calls) == 8 == stats["f_evals"]
    assert len(stats["abs_trace"]) == 8
    _, stats = broyden(tanh_system, np.zeros((B, D)), max_iter=7, tol=1e3, fixed_iterations=True)
    assert stats["nstep"] == 7
    _, stats = broyden(tanh_system, np.zeros((B, D)), max_iter=7, tol=1e3)
    assert stats["nstep"] == 0  # the default stops as soon as every sample meets tol (here: z0)
    np.testing.assert_array_equal(stats["iterations"], 0)


def test_rel_stop_mode_uses_relative_residual() -> None:
    z, stats = broyden(tanh_system, np.zeros((B, D)), max_iter=100, tol=1e-6, stop_mode="rel")
    rel = np.linalg.norm(tanh_system(z) - z, axis=1) / np.linalg.norm(z, axis=1)
    assert np.all(rel < 1e-6)
    assert np.all(stats["rel_lowest"] < 1e-6)


def test_small_circular_memory_still_converges() -> None:
    z, stats = broyden(tanh_system, np.zeros((B, D)), max_iter=200, tol=1e-10, memory=2)
    np.testing.assert_allclose(z, _scipy_root(tanh_system, np.zeros((B, D))), atol=1e-8)
    assert stats["nstep"] > 2  # the buffer wrapped around


def test_degenerate_updates_are_nan_safe() -> None:
    # f constant: after one step g = 0 exactly, so every later update is 0/0
    c = RNG.normal(size=(B, D))
    z, stats = broyden(lambda z: c + 0 * z, np.zeros((B, D)), max_iter=5, tol=0)
    np.testing.assert_array_equal(z, c)
    assert all(np.all(np.isfinite(t)) for t in stats["abs_trace"])


def test_line_search_solves_a_stiff_system() -> None:
    f = lambda z: 3.0 * np.tanh(z @ A.T * 2.0) + C
    z_ls, stats_ls = broyden(f, np.zeros((B, D)), max_iter=60, tol=1e-9, line_search=True)
    assert np.all(stats_ls["abs_lowest"] < 1e-9)
    np.testing.assert_allclose(f(z_ls), z_ls, atol=1e-8)
    assert stats_ls["f_evals"] > stats_ls["nstep"] + 1  # some steps were shortened
    _, stats_plain = broyden(f, np.zeros((B, D)), max_iter=60, tol=1e-9)
    assert stats_ls["nstep"] < stats_plain["nstep"]


@pytest.mark.parametrize("line_search", [False, True])
def test_numpy_and_torch_give_the_same_iterates(line_search: bool) -> None:
    a_t, c_t = torch.from_numpy(A), torch.from_numpy(C)
    z_np, s_np = broyden(cubic_system, np.zeros((B, D)), max_iter=15, tol=0, memory=5, line_search=line_search)
    z_t, s_t = broyden(
        lambda z: 0.5 * (z @ a_t.T) - 0.1 * z**3 + c_t,
        torch.zeros(B, D, dtype=torch.float64),
        max_iter=15, tol=0, memory=5, line_search=line_search,
    )
    assert isinstance(z_t, torch.Tensor) and z_t.dtype == torch.float64
    np.testing.assert_allclose(z_t.numpy(), z_np, atol=1e-12)
    np.testing.assert_allclose(torch.stack(s_t["abs_trace"]).numpy(), np.stack(s_np["abs_trace"]), atol=1e-12)
    np.testing.assert_array_equal(s_t["lowest_step"].numpy(), s_np["lowest_step"])
    assert s_t["nstep"] == s_np["nstep"] and s_t["f_evals"] == s_np["f_evals"]


def _poison(workspace: BroydenWorkspace) -> None:
    """Fill every kept buffer with NaN: a solve that read anything it had not written would show it."""
    for buffer in workspace._buffers.values():
        buffer[...] = float("nan")


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("memory", [4, 12])  # 4 < steps: the circular memory evicts, the spare buffers are used
def test_a_reused_workspace_gives_what_fresh_solves_give(library: str, memory: int) -> None:
    lib = torch if library == "torch" else np
    as_lib = torch.from_numpy if library == "torch" else np.asarray
    a, c = as_lib(A), as_lib(C)
    problems = [  # two solves with different maps and starts through one workspace; rows are independent
        (lambda z: 0.5 * (z @ a.T) - 0.1 * z**3 + c[: z.shape[0]], as_lib(np.zeros((B, D)))),
        (lambda z: 0.9 * lib.tanh(z @ a.T - c[: z.shape[0]]) + 0.1 * z, as_lib(RNG.normal(size=(B, D)))),
    ]
    fresh = [broyden(f, z0, max_iter=12, tol=0, memory=memory) for f, z0 in problems]
    workspace = BroydenWorkspace()
    kept = None
    for (f, z0), (z_fresh, s_fresh) in zip(problems, fresh, strict=True):
        z, stats = broyden(f, z0, max_iter=12, tol=0, memory=memory, workspace=workspace)
        assert np.array_equal(np.asarray(z), np.asarray(z_fresh))
        assert np.array_equal(np.stack([np.asarray(t) for t in stats["abs_trace"]]), np.stack([np.asarray(t) for t in s_fresh["abs_trace"]]))
        assert s_fresh["abs_trace"][-1].max() < 1e-3 * s_fresh["abs_trace"][0].min()  # Broyden did solve both
        assert all(z is not buffer for buffer in workspace._buffers.values())  # the result is the caller's
        if kept is not None:  # the second solve reused every buffer of the first, none made anew
            assert {k: id(v) for k, v in workspace._buffers.items()} == kept
        kept = {k: id(v) for k, v in workspace._buffers.items()}
        _poison(workspace)
    assert ("u_spare" in kept) == (memory < 12)
    z, _ = broyden(problems[0][0], problems[0][1][:2], max_iter=12, tol=0, memory=memory, workspace=workspace)
    alone, _ = broyden(problems[0][0], problems[0][1][:2], max_iter=12, tol=0, memory=memory)
    assert np.array_equal(np.asarray(z), np.asarray(alone))  # another batch size: new buffers, same answer
    # Against the rows of the batch-4 solve only to rounding: BLAS may pick other kernels per shape
    # (torch's do with AVX-512), so the last bits differ by CPU.
    np.testing.assert_allclose(np.asarray(z), np.asarray(fresh[0][0][:2]), rtol=1e-10, atol=1e-10)


def test_a_solve_through_a_kept_workspace_allocates_only_its_result() -> None:
    import tracemalloc

    batch, dim = 2, 50_000
    c = np.random.default_rng(3).standard_normal((batch, dim)).astype(np.float32)
    out = np.empty_like(c)

    def f(z: np.ndarray) -> np.ndarray:  # allocates nothing itself, as the runtime's bound graph
        np.tanh(z, out=out)
        np.multiply(out, 0.5, out=out)
        return np.add(out, c, out=out)

    workspace = BroydenWorkspace()
    solve_fixed(f, np.zeros_like(c), 12, memory=12, workspace=workspace)
    tracemalloc.start()
    try:
        z, stats = solve_fixed(f, np.zeros_like(c), 12, memory=12, workspace=workspace)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    state = c.nbytes  # one (B, D) array
    assert peak < 2.2 * state, peak / state  # z0 and the returned iterate; no (B, D) array per step
    assert stats["residual"].max() < 1e-5  # and it solved z = f(z)


def test_float32_torch_stays_float32() -> None:
    a_t, c_t = torch.from_numpy(A).float(), torch.from_numpy(C).float()
    z, stats = broyden(lambda z: torch.tanh(z @ a_t.T + c_t), torch.zeros(B, D), max_iter=40, tol=1e-5)
    assert z.dtype == torch.float32 and stats["iterations"].dtype == torch.int64
    assert torch.all(stats["abs_lowest"] < 1e-5)


def test_bad_inputs_raise_user_errors() -> None:
    with pytest.raises(SalkitError, match=r"\(B, D\).*\(6,\)"):
        broyden(tanh_system, np.zeros(6))
    with pytest.raises(SalkitError, match="'max'"):
        broyden(tanh_system, np.zeros((B, D)), stop_mode="max")
    with pytest.raises(SalkitError, match="memory"):
        broyden(tanh_system, np.zeros((B, D)), memory=0)


def test_solve_fixed_runs_exactly_t_steps_and_reports_per_sample() -> None:
    calls = []

    def f(z):
        calls.append(1)
        return tanh_system(z).astype(np.float32)  # a float32 graph, as served

    z0 = np.zeros((B, D), dtype=np.float32)
    z, stats = solve_fixed(f, z0, 12, memory=8, tol=1e-4, stop_mode="rel")
    assert len(calls) == 13  # f(z0) and one per step, even after every sample met tol
    assert z.dtype == np.float32 and set(stats) == {"iterations", "residual"}
    assert stats["iterations"].shape == (B,) and (stats["iterations"] < 12).all()
    rel = np.linalg.norm(tanh_system(z) - z, axis=1) / (np.linalg.norm(z, axis=1) + 1e-9)
    np.testing.assert_allclose(stats["residual"], rel, rtol=0, atol=1e-5)
    assert (rel < 1e-4).all()
