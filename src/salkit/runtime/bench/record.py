"""``sal-runtime bench``: the performance record of a bundle (not a timed test).

For each batch size it times the runtime's predict (latency p50/p99 over ``repeat`` calls after
``warmup``; images/s = batch / median latency, robust to a busy machine's outliers), counts the
FLOPs of one call from the graphs and divides the achieved FLOP rate by the measured GEMM peak
**of the precision the plan runs** (``roofline_fraction``). That peak is the best any installed
engine reaches on this CPU — numpy, ONNX Runtime, OpenVINO and torch (through the
``salkit.bench_baselines`` plug-in, in a child process) — not the plan's own engine's, which can
leave most of the CPU's matrix throughput unused; ``roofline_fraction_plan_engine`` is the
fraction of the plan's own engine's rate, for comparison. Peaks for fp32, bf16 and int8 are
recorded with the engine that set each (see :mod:`salkit.runtime.bench.peaks`). For a cooperative bundle both paths are timed:
``split`` (encoder once, latent decoder on N·B rows; the runtime's default and the headline
numbers) and ``whole`` (the generator graph N times over). The split predict is timed together with
its graphs (:mod:`salkit.runtime.bench.breakdown`): ``breakdown`` splits one predict into the time
in graphs (calls × each graph's p50) and the host time between them.

Baselines (:mod:`salkit.runtime.bench.baselines`, e.g. torch from ``--compare-torch``) run on
the same inputs and latents at every batch size: ``speedup_vs_torch`` compares with torch the
authors' way at its best batch size, ``speedup_vs_torch_best`` with torch's best CPU recipe at
its best batch size. With an fp32 bundle next to an int8/fp16 one, both run on the same inputs:
``speedup_vs_fp32`` and ``mae_delta``. Other plans (``--compare-plans``) are timed interleaved
with the main one, per graph and per predict (:mod:`salkit.runtime.bench.plans`).

The JSON record (stable keys)::

    {"bundle", "backend", "precision", "plan", "plan_reason",
     "graph_plans": {graph: "<backend>:<precision>"},  # a per-graph plan ("plan" is then its most common one); {} otherwise
     "model": {"kind", "name", "backbone", "checkpoint_sha256"},  # what was benched (from the manifest)
     "machine": {"cpus", "cpu": {"model", "flags", "bf16", "int8", …}, "platform",
                 "gemm_peak_gflops",                         # the peak of the plan's precision, over engines
                 "gemm_peak_engine",                         # the engine that set it
                 "gemm_peaks_gflops": {"fp32", "bf16", "int8"},  # null where no engine runs it natively
                 "gemm_peak_engines": {"fp32", "bf16", "int8"},  # the engine that set each (null: none)
                 "gemm_rates_gflops": {precision: {engine: GFLOP/s}}, "gemm_peak_samples_gflops",
                 "gemm_engines": {engine: "measured" | "not installed" | why not},
                 "plan_engine", "plan_engine_gemm_gflops",   # the plan's own engine and its rate
                 "load_average": {"start", "end"}},          # 1-minute load average before the run and at its end (the
                                                             # bench's own threads count in the end one)
     "settings": {"samples", "steps", "input_size", "warmup", "repeat", "threads"},
     "<kind>": {"<batch>": {"images_per_s", "p50_ms", "p99_ms", "gflop_per_image", "roofline_fraction",
                            "roofline_fraction_plan_engine", "roofline_fraction_per_graph",
                            "torch_images_per_s", "speedup_vs_torch",
                            "torch_best_recipe_images_per_s", "speedup_vs_torch_best",
                            "speedup_vs_fp32", "mae_delta", "paths": {"split": {…}, "whole": {…}},
                            "breakdown": {"graph_calls", "graphs_p50_ms", "graphs_ms", "host_ms", "host_fraction"}}},
     "torch": {"label", "best_batch", "best_images_per_s", "per_batch", "max_abs_vs_runtime", …},
     "torch_best_recipe": {… the same, "dtype", "channels_last"},
     "plans": {"<plan>": {…}}, "command"}

Values that were not measured are ``null``. ``command`` is the ``sal-runtime bench …`` line that
made the record (the options given, as given) and ``machine.platform`` the OS it ran on; the CLI
writes both, ``run_bench``'s return has neither.
"""

from __future__ import annotations

import gc
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.bench.baselines import BaselineFactory, measure_baselines, timings
from salkit.runtime.bench.breakdown import breakdown, format_breakdown, timings_with_graphs
from salkit.runtime.bench.flops import graph_flops
from salkit.runtime.bench.peaks import best, best_engine, engine_peaks
from salkit.runtime.bundle import Manifest, load_bundle
from salkit.runtime.cpu import cpu_info
from salkit.runtime.kinds import KINDS, kind_of
from salkit.runtime.predictor import Predictor

BASELINE_KEYS = {"torch": "speedup_vs_torch", "torch_best_recipe": "speedup_vs_torch_best"}
# A plan's backend → the engine of the GEMM peaks it runs on (GPU backends have none here).
PLAN_ENGINES = {"ort-cpu": "onnxruntime", "openvino": "openvino"}


def bench_inputs(m: Manifest, batch: int, images: Sequence[Path] | None, seed: int = 0) -> np.ndarray:
    """A normalised (B, 3, S, S) batch: the given images (cycled) or smooth synthetic pictures."""
    from salkit.base.images import decode_image, preprocess

    if images:
        pictures = [decode_image(images[i % len(images)]) for i in range(batch)]
    else:
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, (batch, 8, 8, 3), dtype=np.uint8)
        from PIL import Image

        pictures = [np.asarray(Image.fromarray(c).resize((m.input_size, m.input_size), Image.BILINEAR)) for c in coarse]
    return preprocess(pictures, m.input_size, m.mean, m.std)


def model_facts(m: Manifest) -> dict[str, Any]:
    """Which model a record times, so records of a paper preset and of a deployed bundle stay apart
    after the bundles are gone (the backbone from the checkpoint's config, as export recorded it)."""
    source = m.extra.get("checkpoint") or {}
    return {"kind": m.model_kind, "name": m.model_name, "backbone": (source.get("config") or {}).get("backbone"),
            "checkpoint_sha256": source.get("sha256")}


def flops_per_image(predictor: Predictor, samples: int, steps: int) -> dict[str, float]:
    """Counted FLOPs of predict for one image, per path (the graphs the predictor's loop runs)."""
    return {path: sum(graphs.values()) for path, graphs in graph_flops_per_image(predictor, samples, steps).items()}


def graph_flops_per_image(predictor: Predictor, samples: int, steps: int) -> dict[str, dict[str, float]]:
    """Counted FLOPs of predict for one image, per path and graph (calls × rows × the graph's count at batch 1)."""
    m = predictor.manifest
    runs = predictor.runtime_kind.graph_runs(samples, steps, predictor.loop)
    f = {name: graph_flops(m.graph_path(name)) for name in {g for path in runs.values() for g in path}}
    return {path: {graph: run.calls * run.rows * f[graph] for graph, run in graphs.items()} for path, graphs in runs.items()}


def run_bench(
    bundle: str | Path,
    batches: Sequence[int],
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    samples: int | None = None,
    steps: int | None = None,
    warmup: int = 1,
    repeat: int = 5,
    baselines: BaselineFactory | None = None,
    fp32_bundle: str | Path | None = None,
    compare_plans: Sequence[str] = (),
    images: Sequence[Path] | None = None,
    gemm_size: int = 1536,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """``baselines``: a factory from :mod:`salkit.runtime.bench.baselines` with its source bound,
    called as ``baselines(kind=, samples=, steps=, step_size=, bf16=, threads=)``."""
    if not batches or any(b < 1 for b in batches):
        raise SalkitError(f"--batch needs positive batch sizes, got {list(batches)}")
    if gemm_size < 64:
        raise SalkitError(f"--gemm-size must be >= 64, got {gemm_size}")
    if warmup < 0 or repeat < 1:
        raise SalkitError(f"--warmup must be >= 0 and --repeat >= 1, got {warmup} and {repeat}")
    load_start = _load()  # before any of this run's own work adds to it
    m = load_bundle(bundle)
    model_kind = kind_of(m)
    kind = model_kind.name
    n, k = model_kind.defaults(m, samples, steps)
    inputs = {
        batch: (bench_inputs(m, batch, images),
                np.random.default_rng(1).standard_normal((n, batch, model_kind.latent_dim(m)), dtype=np.float32))
        for batch in batches
    }
    cpu = cpu_info(ask_openvino=True)
    measured: dict[str, dict[str, Any]] = {}
    if baselines is not None:
        made = baselines(kind=kind, samples=n, steps=k, step_size=model_kind.step_size(m), bf16=cpu.bf16, threads=threads)
        measured = measure_baselines(made, inputs, warmup, repeat, progress)
        del made
        gc.collect()
    with Predictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads) as predictor:
        progress(predictor.plan_line)
        progress("measuring the GEMM peaks (fp32, bf16, int8) of every installed engine")
        rates, engines = engine_peaks(gemm_size)
        per_graph = graph_flops_per_image(predictor, n, k)
        flops = {path: sum(graphs.values()) for path, graphs in per_graph.items()}
        record: dict[str, Any] = {
            "bundle": str(bundle), "backend": predictor.backend_name, "precision": predictor.precision,
            "plan": predictor.plan, "plan_reason": predictor.backend_reason, "graph_plans": predictor.graph_plans,
            "model": model_facts(m),
            "machine": {"cpus": os.cpu_count(), "cpu": cpu.to_json(), "load_average": {"start": load_start}},
            "settings": {"samples": n if model_kind.takes_samples else None, "steps": k, "input_size": m.input_size,
                         "warmup": warmup, "repeat": repeat, "threads": threads},
            kind: {},
        }
        fp32 = Predictor.from_bundle(fp32_bundle, backend=backend, precision="fp32", threads=threads) if fp32_bundle else None
        outputs: dict[int, np.ndarray] = {}
        try:
            for batch in batches:
                x, latents = inputs[batch]
                entry: dict[str, Any] = {"paths": {}, "breakdown": None}
                for path in model_kind.bench_paths:
                    progress(f"{kind} batch {batch}: runtime {predictor.plan}, {path} path")
                    call = _runtime_call(predictor, x, latents, k, path)
                    if path == "split":  # the headline: timed with its graphs, to split it into graph and host time
                        t, graph_p50 = timings_with_graphs(call, partial(model_kind.graph_calls, predictor.loop, batch, n), warmup, repeat)
                        entry["breakdown"] = breakdown(t["p50_ms"], graph_p50, model_kind.graph_runs(n, k, predictor.loop)["split"])
                    else:
                        t = timings(call, warmup, repeat)
                    achieved = flops[path] * batch / (t["p50_ms"] / 1e3) / 1e9
                    entry["paths"][path] = {
                        "images_per_s": batch / (t["p50_ms"] / 1e3), "p50_ms": t["p50_ms"], "p99_ms": t["p99_ms"],
                        "gflop_per_image": flops[path] / 1e9, "achieved_gflops": achieved,
                        "graph_gflop_per_image": {g: f / 1e9 for g, f in per_graph[path].items()},
                    }
                    progress(f"  {batch / (t['p50_ms'] / 1e3):.3f} img/s, p50 {t['p50_ms']:.1f} ms, {achieved:.1f} GFLOP/s")
                entry.update({key: entry["paths"]["split"][key] for key in ("images_per_s", "p50_ms", "p99_ms", "gflop_per_image")})
                entry.update(torch_images_per_s=None, speedup_vs_torch=None, torch_best_recipe_images_per_s=None,
                             speedup_vs_torch_best=None, speedup_vs_fp32=None, mae_delta=None)
                if fp32 is not None:
                    progress(f"{kind} batch {batch}: fp32 bundle")
                    t = timings(_runtime_call(fp32, x, latents, k, "split"), warmup, repeat)
                    entry["speedup_vs_fp32"] = entry["images_per_s"] / (batch / (t["p50_ms"] / 1e3))
                    ours = _runtime_call(predictor, x, latents, k, "split")()["saliency"]
                    theirs = _runtime_call(fp32, x, latents, k, "split")()["saliency"]
                    entry["mae_delta"] = float(np.abs(ours - theirs).mean())
                if batch == min(batches) and measured:
                    outputs[batch] = _runtime_call(predictor, x, latents, k, "split")()["saliency"]
                record[kind][str(batch)] = entry
        finally:
            if fp32 is not None:
                fp32.close()
        # A busy machine lowers a short GEMM burst more than a long run: measure again, keep the best.
        progress("measuring the GEMM peaks again")
        again, _ = engine_peaks(gemm_size)
    record["machine"]["gemm_engines"] = engines
    record["machine"]["load_average"]["end"] = _load()
    precisions, engines_of = _plan_precisions(predictor)
    _finish_peaks(record, kind, rates, again, precisions, engines_of, _graph_precisions(predictor, per_graph))
    for key, result in measured.items():
        sample = result.pop("sample")
        result["max_abs_vs_runtime"] = None if sample is None else float(np.abs(sample - outputs[min(batches)]).max())
        record[key] = result
        speedup = BASELINE_KEYS.get(key)
        for batch, entry in record[kind].items():
            entry[f"{key}_images_per_s"] = result["per_batch"][batch]
            if speedup:
                entry[speedup] = entry["images_per_s"] / result["best_images_per_s"]
    if compare_plans:
        from salkit.runtime.bench.plans import compare

        record["plans"] = compare(m, [predictor.plan, *compare_plans], inputs, k, threads, warmup, repeat, progress)
    return record


def _plan_precisions(predictor: Predictor) -> tuple[tuple[str, ...], dict[str, str | None]]:
    """The precisions the plan runs (each graph's, for a per-graph plan) and the engine running each."""
    if predictor.graph_plans:
        engines: dict[str, str | None] = {}
        for plan in predictor.graph_plans.values():
            backend, precision = plan.split(":", 1)
            engines.setdefault(precision, PLAN_ENGINES.get(backend))
        return tuple(engines), engines
    return (predictor.precision,), {predictor.precision: PLAN_ENGINES.get(predictor.backend_name)}


def _graph_precisions(predictor: Predictor, per_graph: dict[str, dict[str, float]]) -> dict[str, str]:
    """Each graph's precision: its own in a per-graph plan, else the plan's."""
    graphs = {g for path in per_graph.values() for g in path}
    return {g: (predictor.graph_plans.get(g) or f":{predictor.precision}").split(":", 1)[1] for g in graphs}


def _finish_peaks(record: dict[str, Any], kind: str, first: dict[str, dict[str, float]], again: dict[str, dict[str, float]],
                  precision: str | tuple[str, ...], plan_engine: str | dict[str, str | None] | None = None,
                  graph_precision: dict[str, str] | None = None) -> None:
    """Best-of-two rates per engine, the peak per precision — the maximum over every engine, and
    which engine set it — and each roofline fraction against the peak of the plan's precision
    (and, for comparison, against the plan's own engine's rate of that precision).

    A per-graph plan runs several precisions (``precision`` a tuple, ``plan_engine`` precision → engine):
    its fraction is taken against the highest of their peaks, the bound the fastest of its graphs could
    reach, so a mix with one fp32 graph is not measured against the fp32 peak alone.

    ``roofline_fraction_per_graph`` (with ``graph_precision``, graph → precision, and each path's
    ``graph_gflop_per_image``): the time one image would take if every graph ran at the best peak of its own
    precision (Σ FLOPs_g / peak_g), over the time it takes. For a single-precision plan it equals
    ``roofline_fraction``; for a mix it credits the graphs that run at a lower precision's peak."""
    rates = {p: {e: max(first.get(p, {}).get(e, 0.0), again.get(p, {}).get(e, 0.0))
                 for e in {*first.get(p, {}), *again.get(p, {})}} for p in {*first, *again}}
    peaks = {p: best(r) for p, r in rates.items()}
    precisions = (precision,) if isinstance(precision, str) else tuple(precision)
    measured = [p for p in precisions if peaks.get(p)]
    peak_precision = max(measured, key=lambda p: peaks[p]) if measured else "fp32"
    peak = peaks[peak_precision]
    engine = plan_engine.get(peak_precision) if isinstance(plan_engine, dict) else plan_engine
    own = rates[peak_precision].get(engine) if engine else None
    plan_engine = engine
    machine = record["machine"]
    machine.update(gemm_rates_gflops=rates, gemm_peaks_gflops=peaks, gemm_peak_gflops=peak,
                   gemm_peak_engines={p: best_engine(r) for p, r in rates.items()},
                   gemm_peak_engine=best_engine(rates[peak_precision]), gemm_peak_precision=peak_precision,
                   plan_engine=plan_engine, plan_engine_gemm_gflops=own,
                   gemm_peak_samples_gflops=[best(first.get(peak_precision) or {}), best(again.get(peak_precision) or {})])
    for entry in record[kind].values():
        for p in entry["paths"].values():
            p["roofline_fraction"] = p["achieved_gflops"] / peak
            p["roofline_fraction_plan_engine"] = p["achieved_gflops"] / own if own else None
            graphs = p.get("graph_gflop_per_image")
            if graph_precision is not None and graphs:
                fallback = peaks.get("fp32") or peak  # a precision no engine measured, as for the plan's peak
                bound_s = sum(gf / (peaks.get(graph_precision.get(g, peak_precision)) or fallback) for g, gf in graphs.items())
                p["roofline_fraction_per_graph"] = bound_s * p["images_per_s"]
        entry["roofline_fraction"] = entry["paths"]["split"]["roofline_fraction"]
        entry["roofline_fraction_plan_engine"] = entry["paths"]["split"]["roofline_fraction_plan_engine"]
        entry["roofline_fraction_per_graph"] = entry["paths"]["split"].get("roofline_fraction_per_graph")


def _load() -> float | None:
    """The 1-minute load average: other jobs slow torch and the runtime unequally, so a record says how busy it ran."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not on this platform
        return None


def _runtime_call(predictor: Predictor, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
    return predictor.runtime_kind.bench_call(predictor, x, latents, steps, path)


def _peak_source(machine: dict[str, Any]) -> str:
    """Which engine set the peak, the plan's own engine's rate, and the engines not measured."""
    if not machine.get("gemm_peak_engine"):
        return ""
    text = f" ({machine['gemm_peak_engine']}, the best of every engine"
    if machine.get("plan_engine_gemm_gflops"):
        text += f"; the plan's {machine['plan_engine']} {machine['plan_engine_gemm_gflops']:.1f}"
    missing = [f"{e} {why}" for e, why in machine.get("gemm_engines", {}).items() if why != "measured"]
    return text + ")" + (f"; not in the peaks: {', '.join(missing)}" if missing else "")


def peaks_line(machine: dict[str, Any]) -> str:
    """"fp32 260 (torch), bf16 none, int8 1966 (onnxruntime)": every precision's peak and who set it."""
    peaks, engines = machine.get("gemm_peaks_gflops") or {}, machine.get("gemm_peak_engines") or {}
    return ", ".join(f"{p} {peaks[p]:.0f} ({engines.get(p) or '?'})" if peaks.get(p) else f"{p} none"
                     for p in ("fp32", "bf16", "int8") if p in peaks)


def format_record(record: dict[str, Any]) -> str:
    kind = next(name for name in KINDS if name in record)  # the record keeps its numbers under the kind's name
    machine = record["machine"]
    baselines = [key for key in BASELINE_KEYS if key in record]
    lines = [
        f"{record['bundle']} ({kind}, plan {record.get('plan', record['backend'])}) on {machine.get('cpu', {}).get('model', '?')}, "
        f"{machine['cpus']} CPUs; {machine.get('gemm_peak_precision', 'fp32')} GEMM peak {machine['gemm_peak_gflops']:.1f} GFLOP/s"
        f"{_peak_source(machine)}",
        f"GEMM peaks per precision, best engine: {peaks_line(machine)}",
        f"{'batch':>5} {'path':>6} {'img/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'GFLOP/img':>10} {'roofline':>9}"
        + "".join(f" {'vs ' + key:>22}" for key in baselines),
    ]
    for batch, entry in record[kind].items():
        for path, p in entry["paths"].items():
            ratios = "".join(f" {p['images_per_s'] / record[key]['best_images_per_s']:21.2f}x" for key in baselines)
            lines.append(f"{batch:>5} {path:>6} {p['images_per_s']:8.2f} {p['p50_ms']:9.1f} {p['p99_ms']:9.1f} "
                         f"{p['gflop_per_image']:10.2f} {p['roofline_fraction']:9.1%}{ratios}")
        per_graph = entry.get("roofline_fraction_per_graph")
        if per_graph is not None and abs(per_graph - entry["roofline_fraction"]) > 5e-4:
            lines.append(f"{batch:>5} roofline with each graph at its own precision's peak: {per_graph:.1%}")
        if entry.get("breakdown"):
            lines.append(format_breakdown(batch, entry["breakdown"]))
        if entry["speedup_vs_fp32"] is not None:
            lines.append(f"{batch:>5} vs fp32: {entry['speedup_vs_fp32']:.2f}x faster, MAE delta {entry['mae_delta']:.5f}")
    for key in baselines:
        t = record[key]
        diff = "" if t.get("max_abs_vs_runtime") is None else f", maps max |Δ| vs runtime {t['max_abs_vs_runtime']:.2g}"
        lines.append(f"{t['label']}: best {t['best_images_per_s']:.2f} img/s at batch {t['best_batch']}{diff}")
    for plan, result in record.get("plans", {}).items():
        for batch, entry in result.items():
            graphs = ", ".join(f"{g} {ms:.1f}" for g, ms in entry["graphs_p50_ms"].items())
            lines.append(f"plan {plan} batch {batch}: {entry['images_per_s']:.2f} img/s ({entry['relative_speed']:.2f}x the first plan); "
                         f"graphs p50 ms: {graphs}")
    return "\n".join(lines)
