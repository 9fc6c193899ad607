"""Per-graph plans: each graph of a bundle on its own CPU engine and precision.

Export may record a *mix* beside the single plan it chose (``precision_choice["graphs"]``, graph
→ ``"<backend>:<precision>"``, e.g. the encoder on ``ort-cpu:int8`` and ``energy_grad`` on
``openvino:bf16``): the fastest candidate of each graph timed alone, confirmed on whole predicts
and passed by the precision gate (salkit.export.precision.mix). Graphs the mix does not name run
the mix's most common plan. Only CPU backends mix: their buffers all live on the host.

This module checks a recorded mix against the machine at hand, graph by graph, and sorts what is
in the way: an engine that is not installed and a graph file that is missing are the bundle's or
the installation's problem; a precision this CPU does not run natively is only this CPU's.
:func:`salkit.runtime.plan.choose_plan` decides what follows from each.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from salkit.base.errors import SalkitError
from salkit.runtime.bundle import Manifest, split_plan
from salkit.runtime.cpu import CpuInfo
from salkit.runtime.precision import CPU_BACKEND_PRECISIONS, backend_precisions, plan_name, variants


@dataclasses.dataclass(frozen=True)
class MixProblem:
    graph: str
    plan: str  # the graph's recorded "<backend>:<precision>"
    what: str  # "engine" | "file" | "precision": who is in the way (the installation, the bundle, this CPU)
    why: str  # one clause

    @property
    def clause(self) -> str:
        return f"graph {self.graph} on {self.plan}: {self.why}"


def recorded_mix(manifest: Manifest) -> dict[str, str]:
    """The per-graph plan export recorded ({} when none). A malformed record is a one-line error
    naming the graph: a mix is never half read."""
    raw = (getattr(manifest, "precision_choice", None) or {}).get("graphs") or {}
    if not isinstance(raw, dict):
        raise SalkitError(f"bundle {manifest.root}: precision_choice.graphs must map graphs to plans, got {raw!r}")
    mix: dict[str, str] = {}
    for graph, plan in raw.items():
        if graph not in manifest.graphs:
            raise SalkitError(f"bundle {manifest.root}: the per-graph plan names graph {graph!r}, which the bundle lacks "
                              f"(it has: {', '.join(sorted(manifest.graphs))})")
        backend, precision = split_plan(str(plan))
        if backend not in CPU_BACKEND_PRECISIONS:
            raise SalkitError(f"bundle {manifest.root}: graph {graph} runs on {plan} in the per-graph plan; only the CPU "
                              f"backends {', '.join(CPU_BACKEND_PRECISIONS)} mix")
        if precision not in backend_precisions(backend):
            raise SalkitError(f"bundle {manifest.root}: graph {graph} runs on {plan} in the per-graph plan; backend "
                              f"{backend} has no {precision} path")
        mix[str(graph)] = plan_name(backend, precision)
    # In the order the kind's loop runs them (the manifest's JSON keeps its keys sorted).
    from salkit.runtime.kinds import KINDS

    kind = KINDS.get(manifest.model_kind)
    order = {graph: i for i, graph in enumerate(kind.graphs if kind is not None else ())}
    return dict(sorted(mix.items(), key=lambda item: order.get(item[0], len(order))))


def base_plan(mix: dict[str, str]) -> str:
    """The plan that runs the graphs a mix does not name: its most common one (an fp32 one on a tie)."""
    counts = collections.Counter(mix.values())
    return min(counts, key=lambda plan: (-counts[plan], not plan.endswith(":fp32")))


def describe(mix: dict[str, str]) -> str:
    """"encoder ort-cpu:int8, latent_decoder ort-cpu:fp32, …" in the mix's own order."""
    return ", ".join(f"{graph} {plan}" for graph, plan in mix.items())


def problems(manifest: Manifest, mix: dict[str, str], cpu: CpuInfo, engines: dict[str, str]) -> list[MixProblem]:
    """What keeps each graph of ``mix`` from running as recorded here; ``engines``: backend → why
    it is not usable ("" when it is), salkit.runtime.backends.availability."""
    found = []
    judged_vnni = (getattr(manifest, "precision_choice", None) or {}).get("int8_vnni")
    for graph, plan in mix.items():
        backend, precision = split_plan(plan)
        if engines.get(backend):
            found.append(MixProblem(graph, plan, "engine", engines[backend]))
        if missing := _missing_file(manifest, graph, precision):
            found.append(MixProblem(graph, plan, "file", missing))
        if why := cpu.lacks(precision):
            found.append(MixProblem(graph, plan, "precision", why))
        elif precision == "int8" and judged_vnni is not None and bool(judged_vnni) != cpu.int8_vnni:
            # as for a single int8 plan (salkit.runtime.precision): u8·s8 sums saturate without VNNI
            found.append(MixProblem(graph, plan, "precision", f"its int8 graph was judged on a CPU "
                                    f"{'with' if judged_vnni else 'without'} VNNI, this one ({cpu.model}) has "
                                    f"{'it' if cpu.int8_vnni else 'none'}"))
    return found


def _missing_file(manifest: Manifest, graph: str, precision: str) -> str:
    entry: Any = variants(manifest).get(precision, {}).get(graph)
    file = str(entry["file"]) if isinstance(entry, dict) and "file" in entry else manifest.graphs[graph].file
    if manifest.root is not None and not (manifest.root / file).is_file():
        return f"its graph file {file} is missing (re-export)"
    return ""


__all__ = ["MixProblem", "base_plan", "describe", "problems", "recorded_mix"]
