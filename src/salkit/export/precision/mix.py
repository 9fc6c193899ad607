"""Per-graph plans at export: each graph on the fastest engine and precision that keeps the maps in the gate.

After the single plans are judged and timed (salkit.export.precision.auto):

1. every candidate graph of the kind gets its candidates here: ``ort-cpu:fp32`` always,
   ``openvino:fp32`` where OpenVINO is usable, ``openvino:bf16`` where the CPU has bf16 units
   too, and ``ort-cpu:int8`` / ``openvino:int8`` where the graph kept an int8 artefact (one that
   paid and passed the single int8 plan's gate) and the CPU runs int8;
2. each graph is timed alone under each candidate (the runtime's runners, repeats interleaved)
   and the fastest candidate of each graph makes the mix;
3. the mix is gated on the final maps exactly as a single plan is (same photographs, same
   thresholds). When it fails, a bisection finds the graph to blame: half of the suspects go back
   to the reference (``ort-cpu:fp32``) at a time, and the half whose return brings the maps back
   (or closest) holds it. That graph's candidate is excluded and the next fastest mix is judged;
4. a mix that passes is kept only if its whole predict beats the best single plan's (timed
   together, interleaved) by the same margin a plan needs to replace fp32.

A mix that is one plan for every graph is that single plan, not a mix, when that plan is the reference, the
one chosen or one that passed the gate; one that failed the gate as a whole is bisected as in 3. The record goes into
``precision_choice`` beside the single plan (which stays, for runtimes without per-graph plans):
``graphs`` (only when kept), ``graph_seconds``, ``mix_seconds`` / ``mix_single_seconds``,
``mix_gate`` (the passing verdict), ``mix_blamed`` and ``mix_reason``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError
from salkit.export.precision.gate import REFERENCE_PLAN, Gate, compare, excess, failures
from salkit.export.precision.timing import GRAPH_REPEATS, best_interleaved
from salkit.runtime.bundle import Manifest, plan_name, split_plan
from salkit.runtime.cpu import CpuInfo
from salkit.runtime.graph_plans import describe

MIX = "mix"  # the precision that makes a Predictor run the manifest's recorded per-graph plan exactly
# (manifest, graph, plans, feeds) → best seconds of the graph alone under each plan
GraphPlanTimer = Callable[[Manifest, str, list[str], dict[str, np.ndarray]], list[float]]


def graph_candidates(manifest: Manifest, graph: str, cpu: CpuInfo, openvino: str) -> list[str]:
    """The plans ``graph`` may run on here; ``openvino``: why that backend is not usable ("" when it is)."""
    plans = [REFERENCE_PLAN]
    if not openvino:
        plans.append(plan_name("openvino", "fp32"))
        if cpu.bf16:
            plans.append(plan_name("openvino", "bf16"))
    if cpu.int8 and graph in manifest.variants.get("int8", {}):
        plans.append(plan_name("ort-cpu", "int8"))
        if not openvino:
            plans.append(plan_name("openvino", "int8"))
    return plans


def mix_view(manifest: Manifest, mix: dict[str, str]) -> Manifest:
    """A copy that records ``mix`` as its per-graph plan and reads each int8 graph's artefact as its
    graph (so a stand-in judge sees by file name what a run reduced)."""
    graphs = {name: manifest.graph_spec(name, "int8") if split_plan(mix.get(name, REFERENCE_PLAN))[1] == "int8" else spec
              for name, spec in manifest.graphs.items()}
    choice = {**manifest.precision_choice, "graphs": dict(mix)}
    return dataclasses.replace(manifest, graphs=graphs, precision_choice=choice)


def time_graph_plans(manifest: Manifest, graph: str, plans: list[str], feeds: dict[str, np.ndarray]) -> list[float]:
    """Best seconds of ``graph`` alone under each plan, with the runtime's own runners."""
    from salkit.runtime.backends import create_runner

    runners: dict[int, Any] = {}
    try:
        for i, plan in enumerate(plans):
            backend, precision = split_plan(plan)
            runner = create_runner(backend, manifest, graph, precision=precision)
            try:  # loaded and run once: an engine that cannot compile this graph (e.g. OpenVINO on a QDQ
                # gradient graph) is no candidate for it, not the end of the export
                runner.load().infer(feeds)
            except SalkitError:
                runner.close()
                continue
            runners[i] = runner
        best = best_interleaved([lambda r=r: r.infer(feeds) for r in runners.values()], GRAPH_REPEATS)
        timed = dict(zip(runners, best, strict=True))
        return [timed.get(i, float("inf")) for i in range(len(plans))]  # inf: this plan cannot run the graph
    finally:
        for runner in runners.values():
            runner.close()


def measure_mix(gate: Gate, manifest: Manifest, mix: dict[str, str]) -> dict[str, float]:
    """The gate's numbers for ``manifest`` run on the per-graph plan ``mix``, exactly as recorded."""
    outputs = gate.run(mix_view(manifest, mix), "auto", MIX, gate.images)
    return compare(gate.kind, gate.reference, outputs, gate.broyden_tol)


def _back(mix: dict[str, str], graphs: list[str]) -> dict[str, str]:
    return {name: REFERENCE_PLAN if name in graphs else plan for name, plan in mix.items()}


def blame_mix(gate: Gate, manifest: Manifest, mix: dict[str, str], metrics: dict[str, float]) -> tuple[str, str]:
    """(graph, why) for a mix that fails: bisect the graphs off the reference, half back in fp32 at a time."""
    suspects = [name for name, plan in mix.items() if plan != REFERENCE_PLAN]
    steps = []
    while len(suspects) > 1:
        half, rest = suspects[: len(suspects) // 2], suspects[len(suspects) // 2:]
        with_half_back = measure_mix(gate, manifest, _back(mix, half))
        if not failures(with_half_back):
            suspects = half
            steps.append(f"{'+'.join(half)} back in fp32: passes")
            continue
        with_rest_back = measure_mix(gate, manifest, _back(mix, rest))
        if not failures(with_rest_back):
            suspects = rest
            steps.append(f"{'+'.join(rest)} back in fp32: passes")
            continue
        # both halves add error: follow the one whose return helps more (the other is found next round)
        suspects = half if excess(with_half_back) <= excess(with_rest_back) else rest
        steps.append(f"neither half alone passes; {'+'.join(suspects)} back helps most")
    if not suspects:
        raise SalkitError("the per-graph plan fails the gate with every graph on the reference plan")
    fails = ", ".join(f"{what} {value:.3g} > {limit:.3g}" for what, value, limit in failures(metrics))
    return suspects[0], f"{fails}; bisection: {'; '.join(steps) or 'the only graph off fp32'}"


def judge_mix(gate: Gate, mix: dict[str, str]) -> dict[str, Any]:
    """The verdict on a per-graph plan, in the shape :meth:`Gate.judge` gives one on a single plan
    (``graphs``: those off the reference; ``culprit``: the graph the bisection blames)."""
    off = [name for name, plan in mix.items() if plan != REFERENCE_PLAN]
    try:
        metrics = measure_mix(gate, gate.manifest, mix)
    except SalkitError as err:
        return {"passed": False, "graphs": off, "reason": f"per-graph plan {describe(mix)} cannot run here: "
                                                          f"{str(err).splitlines()[0]}"}
    verdict: dict[str, Any] = {**metrics, "passed": not failures(metrics), "images": int(gate.images.shape[0]), "graphs": off}
    if verdict["passed"]:
        return {**verdict, "reason": f"final maps within the gate on {gate.images.shape[0]} held photographs"}
    culprit, why = blame_mix(gate, gate.manifest, mix, metrics)
    return {**verdict, "culprit": culprit, "reason": f"per-graph plan fails the gate, graph {culprit} on {mix[culprit]} "
                                                     f"is to blame: {why}"}


@dataclasses.dataclass
class MixSearch:
    manifest: Manifest
    gate: Gate
    graphs: list[str]  # the graphs that may leave the reference: the kind's candidate graphs
    candidates: dict[str, list[str]]  # graph → plans (graph_candidates)
    feeds: Callable[[str], dict[str, np.ndarray]]  # graph → an input of the rows it runs on in the loop
    graph_timer: GraphPlanTimer
    plan_timer: Callable[[list[tuple[Manifest, str, str]], np.ndarray], list[float]]  # auto's PlanTimer
    progress: Callable[[str], None]
    faster: float  # a mix must take at most this fraction of the best single plan's time

    def _judged_whole(self, plan: str, single: str) -> bool:
        """Whether ``plan`` for every graph is already settled as a single plan: the reference, the plan
        chosen, or one that passed the gate. One that failed is bisected like any mix: its fastest graphs
        may still pass without the graph to blame (measured: the real Lite0 coop bundle failed bf16 as a
        whole, and the search stopped there, leaving its decoder in fp32)."""
        return plan in (REFERENCE_PLAN, single) or bool(self.manifest.precision_gate.get(plan, {}).get("passed"))

    def _judge(self, mix: dict[str, str]) -> dict[str, float]:
        return measure_mix(self.gate, self.manifest, mix)

    def blame(self, mix: dict[str, str], metrics: dict[str, float]) -> tuple[str, str]:
        return blame_mix(self.gate, self.manifest, mix, metrics)

    def run(self, single: str) -> dict[str, Any]:
        """The record for ``precision_choice``; ``single``: the plan export chose for every graph."""
        seconds: dict[str, dict[str, float]] = {}
        for name in self.graphs:
            plans = self.candidates[name]
            if len(plans) > 1:
                self.progress(f"per-graph plans: {name} alone under {', '.join(plans)}")
                timed = zip(plans, self.graph_timer(self.manifest, name, plans, self.feeds(name)), strict=True)
                seconds[name] = {plan: t for plan, t in timed if math.isfinite(t)}  # the ones that ran
                if failed := [p for p in plans if p not in seconds[name]]:
                    self.progress(f"per-graph plans: {name} cannot run on {', '.join(failed)}")
        record: dict[str, Any] = {"graph_seconds": seconds, "mix_blamed": []}
        if not seconds:
            return {**record, "mix_reason": "one candidate plan per graph here: no per-graph plan"}
        excluded: dict[str, set[str]] = {name: set() for name in seconds}
        while True:
            mix = {name: min((p for p in seconds[name] if p not in excluded[name]), key=seconds[name].__getitem__)
                   if name in seconds else REFERENCE_PLAN for name in self.graphs}
            uniform = next(iter(mix.values())) if len(set(mix.values())) == 1 else None
            if uniform is not None and self._judged_whole(uniform, single):
                return {**record, "mix_reason": f"the fastest plan of every graph is {uniform}: a single plan, not a mix"}
            self.progress(f"precision gate: per-graph plan {describe(mix)}")
            metrics = self._judge(mix)
            if not failures(metrics):
                break
            graph, why = self.blame(mix, metrics)
            self.progress(f"precision gate: per-graph plan fails, graph {graph} on {mix[graph]} is to blame: {why}")
            record["mix_blamed"].append({"graph": graph, "plan": mix[graph], "reason": why})
            excluded[graph].add(mix[graph])
        single_view = self.manifest.at_precision(split_plan(single)[1])
        self.progress(f"timing per-graph plan against {single} (full predict of one photograph)")
        t_single, t_mix = self.plan_timer([(single_view, *split_plan(single)), (mix_view(self.manifest, mix), "auto", MIX)],
                                          self.gate.images[:1])
        record.update(mix_gate={**metrics, "passed": True, "images": int(self.gate.images.shape[0])},
                      mix_seconds=t_mix, mix_single_seconds=t_single)
        ratio = t_mix / t_single
        if ratio > self.faster:
            return {**record, "mix_reason": f"per-graph plan {describe(mix)} passed the gate but takes {ratio:.2f}× "
                                            f"the time of {single}: not kept"}
        return {**record, "graphs": mix,
                "mix_reason": f"per-graph plan passed the gate and takes {ratio:.2f}× the time of {single}"}


__all__ = ["MIX", "GraphPlanTimer", "MixSearch", "blame_mix", "graph_candidates", "judge_mix", "measure_mix", "mix_view",
           "time_graph_plans"]
