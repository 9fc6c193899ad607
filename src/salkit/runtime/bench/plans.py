"""``sal-runtime bench --compare-plans``: several plans on the same bundle and inputs, interleaved.

On a shared machine two plans timed one after the other see different loads; here every
repetition times each plan in turn (round robin), for the whole predict and for each graph on the
buffers the predict bound, so their ratio holds even when the absolute numbers wander. Per plan
and batch size::

    {"images_per_s", "p50_ms", "relative_speed" (images/s ÷ the first plan's), "relative_to" (its name),
     "graphs_p50_ms": {graph: ms}, "max_abs_vs_first": max |saliency − first plan's saliency|,
     "gate_rejected": the gate's reason, only for a plan the bundle's precision gate rejected}

A plan the gate rejected is still timed (a speed comparison; ``--no-gate-check`` runs it too), and its
rows say so: auto never runs it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.bundle import Manifest
from salkit.runtime.precision import gate_verdict
from salkit.runtime.predictor import Predictor


def _graph_calls(predictor: Predictor, batch: int, samples: int) -> dict[str, Callable[[], None]]:
    """One bound run per graph of the split predict, on the workspace the predict built."""
    return predictor.runtime_kind.graph_calls(predictor.loop, batch, samples)


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def compare(
    manifest: Manifest, plans: Sequence[str], inputs: Mapping[int, tuple[np.ndarray, np.ndarray]], steps: int,
    threads: int | None, warmup: int, repeat: int, progress: Callable[[str], None],
) -> dict[str, dict[str, dict[str, Any]]]:
    names = list(dict.fromkeys(plans))  # the main plan first, duplicates dropped
    for name in names:
        if name.count(":") != 1:
            raise SalkitError(f"--compare-plans takes backend:precision names such as ort-cpu:fp32, got {name!r}")
    result: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in names}
    for batch, (x, latents) in inputs.items():
        # Fresh predictors per batch size, closed after it: every plan's buffers and its engine's
        # memory arenas for one batch shape at a time (at 352² with N = 10, the latent decoder's
        # activations for batch 8 are gigabytes per plan; holding every shape of three plans
        # exhausted 24 GiB).
        predictors: dict[str, Predictor] = {}
        try:
            for name in names:
                backend, precision = name.split(":")
                # Exactly the plan named, or an error: a row labelled bf16 must not time fp32.
                predictors[name] = Predictor(manifest, backend=backend, precision=precision, threads=threads, fallback=False,
                                             check_gate=False)
            _compare_batch(predictors, names, batch, x, latents, steps, warmup, repeat, progress, result)
            for name in names:
                passed, reason = gate_verdict(manifest, name)
                if passed is False:
                    result[name][str(batch)]["gate_rejected"] = reason or "rejected"
        finally:
            for p in predictors.values():
                p.close()
    return result


def _compare_batch(predictors: Mapping[str, Predictor], names: list[str], batch: int, x: np.ndarray, latents: np.ndarray,
                   steps: int, warmup: int, repeat: int, progress: Callable[[str], None],
                   result: dict[str, dict[str, dict[str, Any]]]) -> None:
    samples = latents.shape[0]
    calls = {name: p.runtime_kind.bench_call(p, x, latents, steps, "split") for name, p in predictors.items()}
    outputs = {name: call()["saliency"] for name, call in calls.items()}  # also the first (compiling) call
    for _ in range(warmup):
        for call in calls.values():
            call()
    graphs = {name: _graph_calls(p, batch, samples) for name, p in predictors.items()}
    predict_ms: dict[str, list[float]] = {name: [] for name in names}
    graph_ms: dict[str, dict[str, list[float]]] = {name: {g: [] for g in graphs[name]} for name in names}
    progress(f"batch {batch}: {', '.join(names)} interleaved, {repeat} rounds")
    for _ in range(repeat):
        for name in names:
            predict_ms[name].append(_timed(calls[name]))
            for graph, run in graphs[name].items():
                graph_ms[name][graph].append(_timed(run))
    first = names[0]
    for name in names:
        p50 = float(np.median(predict_ms[name]))
        result[name][str(batch)] = {
            "images_per_s": batch / (p50 / 1e3), "p50_ms": p50,
            "relative_speed": float(np.median(predict_ms[first])) / p50, "relative_to": first,
            "graphs_p50_ms": {g: float(np.median(v)) for g, v in graph_ms[name].items()},
            "max_abs_vs_first": float(np.abs(outputs[name] - outputs[first]).max()),
        }
        progress(f"  {name}: {batch / (p50 / 1e3):.3f} img/s ({result[name][str(batch)]['relative_speed']:.2f}x {first})")


__all__ = ["compare"]
