"""Where one predict's time goes: its graphs, and the host work between them (``sal-runtime bench``).

The kind says which graphs a predict runs and how often (``RuntimeKind.graph_runs``) and hands
one bound run of each on the buffers the predict bound (``RuntimeKind.graph_calls``). Every
repetition times one predict and then one run of each graph, so on a shared machine the
difference of their medians still means something::

    graphs_ms = Σ_graph calls × p50 of one run        host_ms = predict p50 − graphs_ms

Host time is everything of a predict that is not a graph: the kind's own loop on the host (the
QE-FPN Broyden update, the cooperative sample statistics), copies between host and device, and
Python. The record of a batch::

    {"graph_calls": {graph: calls per predict}, "graphs_p50_ms": {graph: ms per call},
     "graphs_ms", "host_ms", "host_fraction" (host_ms ÷ predict p50)}
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from salkit.runtime.kinds.base import GraphRuns


def _timed_ms(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def timings_with_graphs(
    call: Callable[[], Any], graph_calls: Callable[[], Mapping[str, Callable[[], None]]], warmup: int, repeat: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """The predict's latencies (``p50_ms``, ``p99_ms``, ``mean_ms``) and each graph's p50 in ms, timed in
    the same rounds. ``graph_calls`` is asked after the warm-up, once the predict has bound its buffers."""
    for _ in range(warmup):
        call()
    graphs = dict(graph_calls())
    predict_ms: list[float] = []
    graph_ms: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(repeat):
        predict_ms.append(_timed_ms(call))
        for name, run in graphs.items():
            graph_ms[name].append(_timed_ms(run))
    ms = np.asarray(predict_ms)
    latency = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}
    return latency, {name: float(np.median(v)) for name, v in graph_ms.items()}


def breakdown(predict_p50_ms: float, graph_p50_ms: Mapping[str, float], runs: Mapping[str, GraphRuns]) -> dict[str, Any] | None:
    """Graph vs host time of one predict; None when a graph the predict runs has no bound run to time."""
    if not runs or any(name not in graph_p50_ms for name in runs):
        return None
    graphs_ms = sum(run.calls * graph_p50_ms[name] for name, run in runs.items())
    host_ms = predict_p50_ms - graphs_ms
    return {
        "graph_calls": {name: run.calls for name, run in runs.items()},
        "graphs_p50_ms": {name: graph_p50_ms[name] for name in runs},
        "graphs_ms": graphs_ms, "host_ms": host_ms, "host_fraction": host_ms / predict_p50_ms,
    }


def format_breakdown(batch: str, entry: Mapping[str, Any]) -> str:
    """One line: the graphs' share (calls × ms each) and the host's."""
    graphs = ", ".join(f"{name} {entry['graph_calls'][name]}×{ms:.1f}" for name, ms in entry["graphs_p50_ms"].items())
    return (f"{batch:>5}  split: graphs {entry['graphs_ms']:.1f} ms ({graphs}), "
            f"host {entry['host_ms']:.1f} ms ({entry['host_fraction']:.0%} of a predict)")
