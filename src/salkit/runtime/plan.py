"""Choosing a plan — (backend, precision) — for a bundle on this machine, and saying why.

:func:`choose_plan` is the one chooser: the Python API (``Predictor``), ``sal-runtime predict``,
``refine``, ``bench`` and ``serve`` all run the plan it returns, and print :attr:`Plan.line`.

Named backend and precision: checked (available, native on this CPU, artefacts present, not
rejected by the precision gate) and used, or a one-line error. A named plan that only this CPU
cannot run (bf16 without bf16 units, an int8 judged on the other kind of int8 unit) is replaced
by the same request at fp32, and the reason says so (``fallback=False``, for the precision gate
and plan comparisons that must run exactly the plan they name, makes it an error). ``auto`` in
either place:

1. A visible GPU backend wins without measuring (the first available of tensorrt, ort-trt,
   ort-cuda), at fp32.
2. Otherwise the candidates are the available CPU backends × their precisions that are allowed:
   fp32 always; bf16/int8 only where the CPU runs them natively and the manifest's precision
   gate *passed* that plan (a plan the gate did not judge is not a candidate for ``auto``).
3. One candidate: taken. Several: a short timed probe — one warm-up and one timed predict at
   batch 1 with the bundle's defaults, per candidate — and the fastest is taken. The result is
   cached per (bundle, CPU model, threads) in ``$XDG_CACHE_HOME/salkit/plans.json``; a cached
   choice is reused only when the candidates are still the same (a plan the gate rejected or
   this CPU lacks is never taken from the cache).

The bundle's recorded choice (``precision_choice``, what export measured best), when it is not a
candidate here, is named in the reason with why (e.g. ``openvino:bf16`` exported on a CPU with
AMX, loaded on one without bf16 units).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from salkit.base.errors import SalkitError
from salkit.runtime.backends import BACKENDS, CHOICES, CPU_BACKENDS, GPU_BACKENDS, availability
from salkit.runtime.bundle import ARTEFACT_PRECISIONS, MANIFEST_NAME, Manifest, split_plan
from salkit.runtime.cpu import CpuInfo, cpu_info
from salkit.runtime.graph_plans import base_plan, describe, problems, recorded_mix
from salkit.runtime.precision import (
    PRECISION_CHOICES,
    PRECISIONS,
    backend_precisions,
    cpu_unusable,
    gate_verdict,
    plan_name,
    recorded_choice,
    unusable,
)

CACHE_VERSION = 1
Probe = Callable[[Manifest, str, str, "int | None"], float]  # (manifest, backend, precision, threads) → seconds


@dataclasses.dataclass(frozen=True)
class Plan:
    backend: str
    precision: str
    reason: str  # one line, for the user
    # graph → "<backend>:<precision>" when the graphs run on different plans (salkit.runtime.graph_plans);
    # empty: every graph runs backend:precision. A mix's backend:precision is its most common plan.
    graphs: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return plan_name(self.backend, self.precision)

    @property
    def mixed(self) -> bool:
        return bool(self.graphs)

    def plan_of(self, graph: str) -> tuple[str, str]:
        """(backend, precision) that runs ``graph``."""
        return split_plan(self.graphs[graph]) if graph in self.graphs else (self.backend, self.precision)

    @property
    def loop_precision(self) -> str:
        """The precision whose artefacts decide the loop's shape (a kind may pick graphs by it, e.g.
        the split energy gradient only where no reduced energy_grad is to run): a mix's reduced
        artefact precision when it has one."""
        reduced = [split_plan(p)[1] for p in self.graphs.values() if split_plan(p)[1] in ARTEFACT_PRECISIONS]
        return reduced[0] if reduced else self.precision

    @property
    def label(self) -> str:
        """"openvino:bf16", or per graph when mixed: "per graph (encoder ort-cpu:int8, …)"."""
        return f"per graph ({describe(self.graphs)})" if self.graphs else self.name

    @property
    def line(self) -> str:
        """What every command prints: the plan that runs (per graph when mixed) and why."""
        return f"plan {self.label}: {self.reason}"


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salkit" / "plans.json"


def bundle_digest(manifest: Manifest) -> str:
    """SHA-256 of the manifest file (it holds every graph's and variant's hash): the bundle's identity."""
    if manifest.root is not None and (manifest.root / MANIFEST_NAME).is_file():
        return hashlib.sha256((manifest.root / MANIFEST_NAME).read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(manifest.to_json(), sort_keys=True).encode()).hexdigest()


def choose_plan(
    manifest: Manifest,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    *,
    check_gate: bool = True,
    probe: Probe | None = None,
    cpu: CpuInfo | None = None,
    fallback: bool = True,
) -> Plan:
    """The plan to run ``manifest`` with here (see the module's docstring); ``probe`` times a
    candidate when there are several (the runtime's is salkit.runtime.predictor.probe_predict)."""
    if backend not in CHOICES:
        raise SalkitError(f"unknown backend {backend!r}; choose one of {', '.join(CHOICES)}")
    if precision not in PRECISION_CHOICES:
        raise SalkitError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    if precision == "mix":
        return _forced_mix(manifest, backend, cpu or cpu_info(ask_openvino=True))
    mix = recorded_mix(manifest) if (backend, precision) == ("auto", "auto") else {}
    reasons = availability(manifest)
    if not mix or any(not reasons[b] for b in GPU_BACKENDS):
        return _single(manifest, backend, precision, threads, check_gate, probe, cpu, fallback, reasons)
    cpu = cpu or cpu_info(ask_openvino=not reasons.get("openvino"))
    found = problems(manifest, mix, cpu, reasons)
    for problem in found:
        if problem.what == "file":  # a bundle that lost a file is broken, whatever runs it
            raise SalkitError(f"bundle {manifest.root}: {problem.clause}")
    if not found:
        seconds = manifest.precision_choice.get("mix_seconds")
        how = f", {1e3 * float(seconds):.0f} ms a predict at export" if isinstance(seconds, (int, float)) else ""
        return _mixed(mix, f"auto chose the bundle's per-graph plan (checked on {cpu.model}{how})")
    plan = _single(manifest, backend, precision, threads, check_gate, probe, cpu, fallback, reasons)
    note = "; the bundle's per-graph plan is not used here: " + "; ".join(p.clause for p in found)
    return dataclasses.replace(plan, reason=plan.reason + note)


def _mixed(mix: dict[str, str], reason: str) -> Plan:
    backend, precision = split_plan(base_plan(mix))
    return Plan(backend, precision, reason, dict(mix))


def _forced_mix(manifest: Manifest, backend: str, cpu: CpuInfo) -> Plan:
    """``--precision mix``: exactly the recorded per-graph plan. A missing engine or graph file is an
    error naming the graph; a precision this CPU lacks runs that graph at fp32 on its engine and says so."""
    if backend != "auto":
        raise SalkitError(f"--precision mix runs the engines the bundle's per-graph plan names; leave --backend auto "
                          f"(got {backend})")
    mix = recorded_mix(manifest)
    if not mix:
        raise SalkitError(f"bundle {manifest.root} records no per-graph plan (--precision mix); use auto or a precision")
    found = problems(manifest, mix, cpu, availability(manifest))
    for problem in found:
        if problem.what != "precision":
            raise SalkitError(f"bundle {manifest.root}: {problem.clause}")
    notes = []
    for problem in found:
        instead = plan_name(split_plan(problem.plan)[0], "fp32")
        mix[problem.graph] = instead
        notes.append(f"; {problem.clause}: runs {instead} instead")
    return _mixed(mix, "requested (the bundle's per-graph plan)" + "".join(notes))


def _single(manifest: Manifest, backend: str, precision: str, threads: int | None, check_gate: bool,
            probe: Probe | None, cpu: CpuInfo | None, fallback: bool, reasons: dict[str, str]) -> Plan:
    """One plan for every graph (the choice before per-graph plans, and the fallback from one)."""
    ask = backend in ("auto", "openvino") and not reasons.get("openvino")
    cpu = cpu or cpu_info(ask_openvino=ask)  # OpenVINO's own view of bf16 where it may run
    if backend != "auto" and reasons[backend]:
        raise SalkitError(f"backend {backend} is not usable here: {reasons[backend]}")
    if backend == "auto":
        gpu = next((b for b in BACKENDS if b in GPU_BACKENDS and not reasons[b]), None)
        if gpu is not None:
            return _named(manifest, gpu, "fp32" if precision == "auto" else precision, cpu, check_gate, f"auto chose {gpu} (a GPU)")
    if backend != "auto" and precision != "auto":
        why = unusable(manifest, backend, precision, cpu, check_gate=check_gate)
        if why and fallback and why == cpu_unusable(manifest, backend, precision, cpu, check_gate=check_gate):
            return _instead(manifest, backend, precision, why, threads, check_gate, probe, cpu)
        return _named(manifest, backend, precision, cpu, check_gate, "requested")

    backends = [backend] if backend != "auto" else [b for b in CPU_BACKENDS if not reasons[b]]
    if not backends:
        raise SalkitError("no backend is usable: " + "; ".join(f"{b}: {r}" for b, r in reasons.items()))
    precisions = [precision] if precision != "auto" else list(PRECISIONS)
    candidates, skipped = [], []
    for b in backends:
        for p in precisions:
            if p not in backend_precisions(b):
                continue
            why = unusable(manifest, b, p, cpu, check_gate=check_gate)
            if not why and p != "fp32" and check_gate and gate_verdict(manifest, plan_name(b, p))[0] is None:
                why = "not judged by the export's precision gate"
            if why:
                skipped.append((plan_name(b, p), why))
            else:
                candidates.append(plan_name(b, p))
    cpu_only = all(why == cpu_unusable(manifest, *name.split(":"), cpu, check_gate=check_gate) for name, why in skipped)
    if not candidates and fallback and precision != "auto" and skipped and cpu_only:
        return _instead(manifest, backend, precision, _grouped(skipped), threads, check_gate, probe, cpu)
    if not candidates:
        raise SalkitError(f"no usable plan for bundle {manifest.root}: {_grouped(skipped)}")
    notes = _recorded_choice_note(manifest, candidates, skipped)
    if len(candidates) == 1:
        chosen, how = candidates[0], "the only allowed plan"
    else:
        chosen, how = _probed(manifest, candidates, threads, cpu, probe)
    backend_name, precision_name = chosen.split(":")
    tail = "; not candidates: " + _grouped(skipped) if skipped else ""
    return Plan(backend_name, precision_name, f"auto chose {chosen} ({how}){tail}{notes}")


def _instead(manifest: Manifest, backend: str, precision: str, why: str, threads: int | None, check_gate: bool,
             probe: Probe | None, cpu: CpuInfo) -> Plan:
    """The request at fp32 (always native), with a reason that names what was asked and why it does not run here."""
    plan = _single(manifest, backend, "fp32", threads, check_gate, probe, cpu, False, availability(manifest))
    asked = plan_name(backend, precision) if backend != "auto" else f"precision {precision}"
    how = "" if plan.reason == "requested" else f" ({plan.reason})"
    return Plan(plan.backend, plan.precision, f"{asked} was requested, but this CPU cannot run it: {why}; "
                                              f"runs {plan.name} instead{how}")


def _grouped(skipped: list[tuple[str, str]]) -> str:
    """"a, b (why); c (why)": plans skipped for the same reason share it."""
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped:
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items())


def _named(manifest: Manifest, backend: str, precision: str, cpu: CpuInfo, check_gate: bool, how: str) -> Plan:
    why = unusable(manifest, backend, precision, cpu, check_gate=check_gate)
    if why:
        raise SalkitError(f"plan {plan_name(backend, precision)} cannot run bundle {manifest.root} here: {why}")
    return Plan(backend, precision, how)


def _recorded_choice_note(manifest: Manifest, candidates: list[str], skipped: list[tuple[str, str]]) -> str:
    choice = recorded_choice(manifest)
    if not choice or choice in candidates:
        return ""
    why = dict(skipped).get(choice)
    if why is None:
        backend = choice.split(":")[0]
        why = availability(manifest).get(backend) or "not a plan of the requested backend/precision"
    return f"; the bundle's recorded choice {choice} is not used here: {why}"


def _probed(manifest: Manifest, candidates: list[str], threads: int | None, cpu: CpuInfo, probe: Probe | None) -> tuple[str, str]:
    key = f"{bundle_digest(manifest)}|{cpu.model}|threads={threads or 'all'}"
    cached = _read_cache().get(key)
    if isinstance(cached, dict) and sorted(cached.get("candidates", [])) == sorted(candidates) and cached.get("choice") in candidates:
        times = cached.get("seconds", {})
        return cached["choice"], "cached probe: " + _times(times)
    if probe is None:
        raise SalkitError("choosing among several plans needs a probe (salkit.runtime.predictor.probe_predict)")
    times: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in candidates:
        b, p = name.split(":")
        try:
            times[name] = float(probe(manifest, b, p, threads))
        except SalkitError as err:  # e.g. a backend that is installed but cannot compile a graph: not a choice
            failed[name] = str(err)
    if not times:
        raise SalkitError(f"no plan could run bundle {manifest.root}: " + "; ".join(f"{n}: {w}" for n, w in failed.items()))
    chosen = min(times, key=lambda n: times[n])
    if not failed:  # a failure may be passing (memory, a busy device): measure again next time
        _write_cache(key, {"choice": chosen, "candidates": sorted(candidates), "seconds": times, "cpu": cpu.model,
                           "bundle": str(manifest.root), "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return chosen, "probe: " + _times(times) + "".join(f"; {n} failed: {w}" for n, w in failed.items())


def _times(times: dict[str, float]) -> str:
    return ", ".join(f"{n} {1e3 * t:.0f} ms" for n, t in sorted(times.items(), key=lambda kv: kv[1]))


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("plans"), dict):
        return {}
    return data["plans"]


def _write_cache(key: str, entry: dict) -> None:
    """Best effort: a cache that cannot be written only means the next start probes again."""
    from salkit.base.atomic import atomic_write_text

    plans = _read_cache()
    plans[key] = entry
    try:
        atomic_write_text(cache_path(), json.dumps({"version": CACHE_VERSION, "plans": plans}, indent=1, sort_keys=True) + "\n")
    except (SalkitError, OSError):
        pass


__all__ = ["Plan", "bundle_digest", "cache_path", "choose_plan"]
