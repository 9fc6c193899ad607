"""The precision gate: a reduced-precision plan is judged by the final maps, not element-wise.

On held real photographs the plan's full predict (the runtime's :class:`Predictor`, same seed,
so the same latents; the bundle's default samples and steps; no Langevin noise) is compared with
float32 on ort-cpu, the reference:

* saliency maps: mean |Δ| ≤ 0.003 and max |Δ| ≤ 0.05;
* and what the model kind adds (``ExportKind.gate_metrics``): coop entropy maps (predictive,
  aleatoric, epistemic, in nats): mean |Δ| ≤ 0.01 each; QE-FPN: the solve must converge as well
  as in float32: the final relative residual at most twice float32's (or within the bundle's
  Broyden tolerance), since a quantised ``f`` re-applies its error every iteration.

A plan that fails is not used, and the verdict names the graph to blame: each reduced graph is
swapped back to float32 in turn, and the one whose return brings the maps closest to float32 is
named with both numbers.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError
from salkit.export.kinds import get_export_kind
from salkit.runtime.bundle import Manifest, split_plan
from salkit.runtime.precision import REFERENCE_PLAN

SALIENCY_MEAN_ABS = 0.003
SALIENCY_MAX_ABS = 0.05
ENTROPY_MEAN_ABS = 0.01
GATE_SEED = 0

Outputs = dict[str, np.ndarray]
# (manifest view, backend, precision, images) → predict_tensor outputs; tests substitute stand-ins.
PlanRunner = Callable[[Manifest, str, str, np.ndarray], Outputs]


def run_with_predictor(manifest: Manifest, backend: str, precision: str, x: np.ndarray) -> Outputs:
    """The runtime's full predict on ``x`` (B,3,S,S) with the manifest's graphs as given."""
    import inspect

    from salkit.runtime.bundle import ARTEFACT_PRECISIONS, HINT_PRECISIONS
    from salkit.runtime.predictor import Predictor

    if precision in ARTEFACT_PRECISIONS and not manifest.variants.get(precision):
        precision = "fp32"  # a view with every reduced graph back in float32 (Gate._culprit) runs them so
    options: dict[str, Any] = {}
    # Always named ("mix": the view's recorded per-graph plan, exactly): left to auto, the float32
    # reference itself could become a faster plan the bundle's gate passed (e.g. ort-cpu:int8).
    if "precision" in inspect.signature(Predictor).parameters:
        options["precision"] = precision
    elif precision in HINT_PRECISIONS or precision == "mix":
        raise SalkitError(f"this runtime cannot compile graphs to {precision} (no precision hints)")
    # fallback=False: a verdict on a plan must come from that plan, never from its fp32 stand-in;
    # check_gate=False: a verdict recorded earlier (a plan being pruned graph by graph) does not stop the gate.
    with Predictor(manifest, backend=backend, fallback=False, check_gate=False, **options) as predictor:
        return predictor.predict_tensor(x, seed=GATE_SEED)


def compare(kind: str, reference: Outputs, candidate: Outputs, broyden_tol: float = 0.0) -> dict[str, float]:
    """The gate's numbers for one candidate run against the reference run: the saliency maps',
    then the kind's own (``broyden_tol``: the bundle's tolerance, ExportKind.gate_tolerance)."""
    sal = np.abs(candidate["saliency"].astype(np.float64) - reference["saliency"])
    metrics = {"saliency_mean_abs": float(sal.mean()), "saliency_max_abs": float(sal.max())}
    metrics.update(get_export_kind(kind).gate_metrics(reference, candidate, broyden_tol))
    return metrics


def failures(metrics: dict[str, float]) -> list[tuple[str, float, float]]:
    """(what, value, limit) for every bound the metrics exceed (NaN exceeds everything)."""
    bounds = [("saliency mean |Δ|", metrics["saliency_mean_abs"], SALIENCY_MEAN_ABS),
              ("saliency max |Δ|", metrics["saliency_max_abs"], SALIENCY_MAX_ABS)]
    if "entropy_mean_abs" in metrics:
        bounds.append(("entropy mean |Δ|", metrics["entropy_mean_abs"], ENTROPY_MEAN_ABS))
    if "residual" in metrics:
        bounds.append(("final residual", metrics["residual"], metrics["residual_limit"]))
    return [(what, value, limit) for what, value, limit in bounds if not value <= limit]


def excess(metrics: dict[str, float]) -> float:
    """How far past its bounds a run is (the largest value/limit ratio; ≤ 1 passes)."""
    ratios = [value / limit if limit > 0 else float("inf") for _, value, limit in failures(metrics)]
    return max(ratios, default=0.0) if all(np.isfinite(ratios)) else float("inf")


def _describe(fails: list[tuple[str, float, float]]) -> str:
    return ", ".join(f"{what} {value:.3g} > {limit:.3g}" for what, value, limit in fails)


class Gate:
    """Judges plans of one bundle on one held image set; the float32 run is made once."""

    def __init__(self, manifest: Manifest, images: np.ndarray, run: PlanRunner = run_with_predictor) -> None:
        if images.ndim != 4 or images.shape[0] == 0:
            raise SalkitError("the precision gate needs at least one held image")
        self.manifest, self.images, self.run = manifest, images, run
        self.kind = manifest.model_kind
        self.broyden_tol = get_export_kind(self.kind).gate_tolerance(manifest)
        backend, precision = split_plan(REFERENCE_PLAN)
        self.reference = run(manifest.at_precision(manifest.precision), backend, precision, images)

    def _measure(self, backend: str, precision: str, reference_graphs: tuple[str, ...] = ()) -> dict[str, float]:
        view = self.manifest.at_precision(precision, reference_graphs)
        candidate = self.run(view, backend, precision, self.images)
        return compare(self.kind, self.reference, candidate, self.broyden_tol)

    def judge(self, plan: str) -> dict[str, Any]:
        """The verdict recorded in ``manifest.precision_gate[plan]``."""
        backend, precision = split_plan(plan)
        reduced = sorted(self.manifest.variants.get(precision, {}))
        try:
            metrics = self._measure(backend, precision)
        except SalkitError as err:  # e.g. a backend that cannot compile a quantised graph: not usable
            return {"passed": False, "graphs": reduced, "reason": f"{plan} cannot run here: {str(err).splitlines()[0]}"}
        verdict: dict[str, Any] = {**metrics, "passed": False, "images": int(self.images.shape[0]),
                                   "graphs": reduced, "reason": ""}
        fails = failures(metrics)
        if not fails:
            verdict.update(passed=True, reason=f"final maps within the gate on {self.images.shape[0]} held photographs")
            return verdict
        culprit, without = self._culprit(backend, precision, reduced, metrics)
        verdict["culprit"] = culprit
        verdict["culprit_back_in_fp32"] = without
        blame = ""
        if culprit:
            after = failures(without)
            if not after:
                blame = (f"; graph {culprit} is to blame: with it back in fp32 the maps pass "
                         f"(saliency max |Δ| {without['saliency_max_abs']:.3g})")
            elif excess(without) < excess(metrics):  # it helps, but another reduced graph fails too
                blame = f"; graph {culprit} contributes most, and not alone: with it back in fp32 {_describe(after)}"
            else:
                blame = (f"; no single graph is to blame (none back in fp32 brings the maps closer); {culprit} comes "
                         f"closest: with it back in fp32 {_describe(after)}")
        verdict["reason"] = f"{plan} fails the gate: {_describe(fails)}{blame}"
        return verdict

    def _culprit(self, backend: str, precision: str, reduced: list[str],
                 metrics: dict[str, float]) -> tuple[str, dict[str, float]]:
        """The reduced graph whose return to float32 helps most (its metrics then), even when none helps
        alone: pruning then still sends one graph back per round, the closest first."""
        if len(reduced) == 1 and backend == "ort-cpu":
            return reduced[0], {k: v for k, v in self.reference_metrics().items()}
        best, best_metrics = "", {}
        for graph in reduced:
            trial = self._measure(backend, precision, reference_graphs=(graph,))
            if not best or excess(trial) < excess(best_metrics):
                best, best_metrics = graph, trial
        return best, best_metrics or metrics

    def reference_metrics(self) -> dict[str, float]:
        """The reference compared with itself (every Δ 0): the state with no graph reduced."""
        return compare(self.kind, self.reference, self.reference, self.broyden_tol)
