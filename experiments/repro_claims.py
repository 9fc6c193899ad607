"""The claims the harness reproduces: per claim, its training runs, its rows for one seed, its checks.

Each ``measure_*`` function returns ``{"rows": {row: {metric: value}}, ...extras}`` for one seed;
``repro.py`` caches that per (claim, seed) and aggregates over seeds with ``repro_verdict``.
Training runs are shared between claims (the QE-FPN quasi/Sobel run serves claims 2, 4, 5, 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from experiments import repro_runs as rr
from experiments.repro_verdict import Check, auroc

SCORES = ("mae", "s_measure", "mean_e", "max_f")


@dataclass
class Context:
    out: Path
    budget: rr.Budget
    train_dir: Path
    test_dir: Path
    images: Any  # (B,3,S,S) torch tensor
    masks: np.ndarray  # (B,S,S) bool
    _maps: dict[tuple[int, bool, str | None], dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def runs(self) -> Path:
        return self.out / "runs"

    def coop(self, seed: int, scribble: bool = False, generator_only: str | None = None) -> Path:
        """A cooperative run, or (``generator_only``) one of Table 2's generator-alone baselines."""
        key = f"generator_{generator_only}" if generator_only else "coop_scribble" if scribble else "coop"
        return rr.train_coop(self.runs, key, seed, self.budget, self.train_dir, scribble=scribble,
                             generator_only=generator_only)

    def qefpn(self, seed: int, solver: str = "quasi", edge: str = "sobel", layers: int | None = None) -> Path:
        key = f"qefpn_{solver}{layers or ''}_{edge}"
        return rr.train_qefpn(self.runs, key, seed, self.budget, self.train_dir, solver=solver, edge=edge,
                              unrolled_layers=layers)

    def coop_maps(self, seed: int, scribble: bool = False, generator_only: str | None = None) -> dict[str, np.ndarray]:
        """``repro_runs.coop_outputs`` of the run, computed once per (seed, supervision, baseline)."""
        key = (seed, scribble, generator_only)
        if key not in self._maps:
            self._maps[key] = rr.coop_outputs(self.coop(seed, scribble, generator_only), self.images,
                                              self.budget.samples, seed)
        return self._maps[key]

    def score(self, maps: np.ndarray, keys: tuple[str, ...] = SCORES) -> dict[str, float]:
        return rr.metrics(maps, self.masks, keys)


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    metrics: tuple[str, ...]
    checks: tuple[Check, ...]
    measure: Callable[[Context, int], dict[str, Any]]
    note: str = ""


ABLATION_ROWS = ("G(X), trained alone", "G(X,h), trained alone", "cooperative Ŷ (before the energy)", "cooperative Ỹ")


def measure_ablation(ctx: Context, seed: int) -> dict[str, Any]:
    deterministic = ctx.coop_maps(seed, generator_only="deterministic")["g_h0"]  # predicted with h = 0
    latent = ctx.coop_maps(seed, generator_only="latent")["generator"]  # mean over the N samples
    coop = ctx.coop_maps(seed)
    return {"rows": dict(zip(ABLATION_ROWS, (ctx.score(deterministic), ctx.score(latent),
                                             ctx.score(coop["generator"]), ctx.score(coop["coop"])), strict=True))}


def measure_refine(ctx: Context, seed: int) -> dict[str, Any]:
    coop = ctx.coop(seed)
    qefpn = rr.qefpn_outputs(ctx.qefpn(seed), ctx.images)["saliency"]
    degraded = rr.degrade(ctx.masks, seed)
    return {"rows": {
        "QE-FPN": ctx.score(qefpn), "QE-FPN + energy refine": ctx.score(rr.coop_refine(coop, ctx.images, qefpn)),
        "degraded GT": ctx.score(degraded),
        "degraded GT + energy refine": ctx.score(rr.coop_refine(coop, ctx.images, degraded)),
    }}


def measure_uncertainty(ctx: Context, seed: int) -> dict[str, Any]:
    maps = ctx.coop_maps(seed)
    wrong = (maps["coop"] > 0.5) != ctx.masks
    return {"rows": {"predictive entropy": {"auroc": auroc(maps["entropy"], wrong), "error_rate": float(wrong.mean())}}}


def _qefpn_rows(ctx: Context, seed: int, variants: dict[str, dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {"rows": {name: ctx.score(rr.qefpn_outputs(ctx.qefpn(seed, **kw), ctx.images)["saliency"], keys)
                     for name, kw in variants.items()}}


def measure_solvers(ctx: Context, seed: int) -> dict[str, Any]:
    variants = {"unrolled, 1 layer": {"solver": "unrolled", "layers": 1},
                "unrolled, 3 layers": {"solver": "unrolled", "layers": 3},
                "equilibrium": {"solver": "equilibrium"}, "quasi-equilibrium": {"solver": "quasi"}}
    return _qefpn_rows(ctx, seed, variants, SCORES)


def measure_edge(ctx: Context, seed: int) -> dict[str, Any]:
    return _qefpn_rows(ctx, seed, {"no edge loss": {"edge": "none"}, "Sobel edge loss": {"edge": "sobel"}},
                       SCORES + ("binary_ratio",))


def measure_operators(ctx: Context, seed: int) -> dict[str, Any]:
    names = {"Sobel": "sobel", "Prewitt": "prewitt", "Frei-Chen": "frei-chen", "Laplacian": "laplacian"}
    return _qefpn_rows(ctx, seed, {name: {"edge": edge} for name, edge in names.items()}, SCORES)


def measure_residuals(ctx: Context, seed: int) -> dict[str, Any]:
    rows, residuals = {}, {}
    for name, solver in (("quasi-equilibrium", "quasi"), ("equilibrium", "equilibrium")):
        r = rr.qefpn_outputs(ctx.qefpn(seed, solver=solver), ctx.images)["residual"].astype(np.float64)
        rows[name] = {"residual_median": float(np.median(r)), "residual_mean": float(r.mean())}
        residuals[name] = r.tolist()
    return {"rows": rows, "residuals": residuals}


def measure_weak(ctx: Context, seed: int) -> dict[str, Any]:
    full = ctx.coop_maps(seed)["coop"]
    weak = ctx.coop_maps(seed, scribble=True)["coop"]
    return {"rows": {"full supervision": ctx.score(full), "scribbles": ctx.score(weak)}}


def _better(a: str, b: str, metrics: tuple[str, ...]) -> tuple[Check, ...]:
    return tuple(Check(m, a, b) for m in metrics)


CLAIMS: tuple[Claim, ...] = (
    Claim("ablation", "Table 2 ablation: G(X) vs G(X,h) vs cooperative Ỹ", SCORES,
          _better("cooperative Ỹ", "G(X,h), trained alone", SCORES) + _better("cooperative Ỹ", "G(X), trained alone", SCORES),
          measure_ablation,
          "Three separately trained models per seed, same generator, data and budget (`train-coop --generator-only`): "
          "the deterministic G(X) (h = 0, BCE only), the latent-variable G(X,h) alone (h inferred by Langevin from "
          "the ground truth; predicted as the mean of N samples), and the cooperative model (Ŷ = the mean of N "
          "generator samples, Ỹ = the energy's Langevin descent from it)."),
    Claim("refine", "§6.3: the trained energy refines another model's maps", SCORES,
          _better("QE-FPN + energy refine", "QE-FPN", SCORES)
          + _better("degraded GT + energy refine", "degraded GT", SCORES),
          measure_refine,
          "Refinement: K noise-free Langevin steps of the cooperative model's energy (its training K and δ_U) "
          "from the other map. Degraded GT: blurred, shifted, noisy, with an erased box."),
    Claim("uncertainty", "Predictive entropy detects wrong pixels", ("auroc", "error_rate"),
          (Check("auroc", "predictive entropy", kind="above", threshold=0.5),), measure_uncertainty,
          "Wrong pixel: Ỹ thresholded at 0.5 disagrees with the mask. AUROC of the per-pixel predictive entropy "
          "of the N generator samples as a score for 'wrong'."),
    Claim("solvers", "Table IV: unrolled vs equilibrium vs quasi-equilibrium", SCORES,
          tuple(Check(m, "quasi-equilibrium", other)
                for other in ("unrolled, 1 layer", "unrolled, 3 layers", "equilibrium") for m in ("mae", "s_measure", "max_f")),
          measure_solvers,
          "At p = 5e-7 the quasi-equilibrium mask almost never drops a unit, so quasi and equilibrium training "
          "coincide unless a drop happens (docs/qefpn.md); a tie counts against the claim."),
    Claim("edge", "Table V: edge loss on vs off, with the binary ratio", SCORES + ("binary_ratio",),
          _better("Sobel edge loss", "no edge loss", SCORES + ("binary_ratio",)), measure_edge),
    Claim("operators", "Table VI: Sobel vs Prewitt vs Frei-Chen vs Laplacian", SCORES,
          tuple(Check(m, "Sobel", other) for other in ("Prewitt", "Frei-Chen", "Laplacian") for m in ("mae", "s_measure")),
          measure_operators, "Checked: Sobel, the operator the paper adopts, beats each other operator."),
    Claim("residuals", "Fig. 7: relative residuals ‖f(z*) − z*‖/‖z*‖, quasi vs equilibrium",
          ("residual_median", "residual_mean"), (Check("residual_median", "quasi-equilibrium", "equilibrium"),),
          measure_residuals, "Residuals of the test images at the models' inference solve (see residuals.png)."),
    Claim("weak", "Weak supervision: scribble-trained vs fully supervised", SCORES,
          tuple(Check(m, "scribbles", "full supervision", kind="ratio", threshold=0.9) for m in SCORES), measure_weak,
          "Both cooperative models with the same settings; the scribble one trains from scribble/ only "
          "(Algorithm 2). Claimed: scribbles reach 90 % of full supervision on each metric."),
)
