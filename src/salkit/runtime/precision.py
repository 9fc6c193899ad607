"""Precision plans: which (backend, precision) pairs a bundle may run, read from its manifest.

A *plan* is ``"<backend>:<precision>"``, e.g. ``"openvino:bf16"`` or ``"ort-cpu:int8"``. The
manifest records (written by ``export-trt``; every field may be absent in older bundles)::

    variants:         {precision: {graph: {"file", "sha256"}}}   lower-precision ONNX artefacts
    precision_gate:   {plan: {"passed": bool, …numbers…, "reason": str}}   judged on final maps
    precision_choice: plan                                         what export measured best

What a precision means per backend:

=========== ================================================================================
ort-cpu     fp32: the fp32 graphs. int8: the ``int8`` variants (QDQ graphs) where the bundle
            has them, the fp32 graph for the rest.
openvino    fp32: the fp32 graphs compiled with inference precision f32. bf16: the same graphs
            compiled with inference precision bf16 (only where the CPU has bf16 units). int8:
            as for ort-cpu, compiled with precision f32 for the non-quantised parts.
GPU ones    fp32 only (a TensorRT engine carries the precision it was built with).
=========== ================================================================================

The reference plan, ort-cpu fp32 (the maps every gate compares with), is always allowed. An fp32
plan on another engine is allowed unless the gate rejected it: export judges it like any other
plan, because a fixed-point solve amplifies the small differences between engines (the paper
QE-FPN on openvino:fp32 differed from ort-cpu:fp32 by max |Δ| 0.051 on PASCAL-S photographs); a
bundle whose gate never judged it keeps the old rule (allowed). Another plan is *allowed* when the CPU runs it natively
(:mod:`salkit.runtime.cpu`), the bundle has the artefacts it needs and the precision gate did
not reject it; ``auto`` additionally wants the gate to have passed it. An int8 gate entry may
say ``"int8_vnni": bool`` (the kind of int8 unit it was judged on): on AVX2 without VNNI the
u8·s8 products are summed in int16 and saturate for full-range activations, so a verdict from
the other kind of CPU does not carry over and the plan is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salkit.base.errors import SalkitError
from salkit.runtime.bundle import Manifest, sha256_file
from salkit.runtime.cpu import CpuInfo

PRECISIONS = ("fp32", "bf16", "int8")
PRECISION_CHOICES = ("auto", *PRECISIONS, "mix")  # mix: the per-graph plan the bundle records (salkit.runtime.graph_plans)
CPU_BACKEND_PRECISIONS = {"ort-cpu": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
_GRAPH_FILE_PRECISION = {"fp32": None, "bf16": None, "int8": "int8"}  # which variant files a precision reads
REFERENCE_PLAN = "ort-cpu:fp32"  # what the precision gate compares every plan with


def plan_name(backend: str, precision: str) -> str:
    return f"{backend}:{precision}"


def _record(manifest: Manifest, key: str) -> Any:
    """A manifest field the precision export writes (runtime/bundle.py owns the schema)."""
    return getattr(manifest, key, None)


def variants(manifest: Manifest) -> dict[str, dict[str, dict[str, str]]]:
    return dict(_record(manifest, "variants") or {})


def gate_records(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return dict(_record(manifest, "precision_gate") or {})


def recorded_choice(manifest: Manifest) -> str | None:
    choice = _record(manifest, "precision_choice") or {}
    return str(choice["plan"]) if choice.get("plan") else None


def backend_precisions(backend: str) -> tuple[str, ...]:
    return CPU_BACKEND_PRECISIONS.get(backend, ("fp32",))


def gate_verdict(manifest: Manifest, plan: str) -> tuple[bool | None, str]:
    """(passed, reason) of the precision gate for a plan; (None, "") when the gate did not judge it
    (an fp32 plan the gate did not judge: (True, ""), see the module's docstring)."""
    entry = gate_records(manifest).get(plan)
    if plan == REFERENCE_PLAN or (plan.endswith(":fp32") and not (isinstance(entry, dict) and "passed" in entry)):
        return True, ""
    if not isinstance(entry, dict) or "passed" not in entry:
        return None, ""
    return bool(entry["passed"]), str(entry.get("reason", "") or "")


def unusable(manifest: Manifest, backend: str, precision: str, cpu: CpuInfo, *, check_gate: bool = True) -> str:
    """Why a plan cannot run this bundle here, in one clause ("" when it can)."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}"
    if precision not in backend_precisions(backend):
        return f"backend {backend} has no {precision} path (it runs {', '.join(backend_precisions(backend))})"
    if backend in CPU_BACKEND_PRECISIONS and (why := cpu.lacks(precision)):
        return why
    kind = _GRAPH_FILE_PRECISION[precision]
    if kind is not None and not variants(manifest).get(kind):
        return f"the bundle has no {kind} graphs"
    if check_gate:
        passed, reason = gate_verdict(manifest, plan_name(backend, precision))
        if passed is False:
            return f"the precision gate rejected {plan_name(backend, precision)}" + (f": {reason}" if reason else "")
        if passed and (why := _other_int8_unit(manifest, backend, precision, cpu)):
            return why
    return ""


def cpu_unusable(manifest: Manifest, backend: str, precision: str, cpu: CpuInfo, *, check_gate: bool = True) -> str:
    """The part of :func:`unusable` that is this CPU's doing ("" when the CPU could run the plan):
    a forced plan that fails only here is replaced by another (salkit.runtime.plan), not refused."""
    if precision not in backend_precisions(backend) or backend not in CPU_BACKEND_PRECISIONS:
        return ""
    if why := cpu.lacks(precision):
        return why
    return _other_int8_unit(manifest, backend, precision, cpu) if check_gate else ""


def _other_int8_unit(manifest: Manifest, backend: str, precision: str, cpu: CpuInfo) -> str:
    judged_vnni = gate_records(manifest).get(plan_name(backend, precision), {}).get("int8_vnni")
    if precision == "int8" and judged_vnni is not None and bool(judged_vnni) != cpu.int8_vnni:
        # Without VNNI, u8·s8 pairs are summed in int16 and saturate (AVX2's vpmaddubsw): the
        # maps the gate saw on one kind of int8 unit say nothing about the other.
        return (f"the precision gate judged int8 on a CPU {'with' if judged_vnni else 'without'} VNNI, "
                f"this one ({cpu.model}) has {'it' if cpu.int8_vnni else 'none'}")
    return ""


def graph_file(manifest: Manifest, graph: str, precision: str) -> tuple[Path, str | None]:
    """(path, sha256 to verify or None) of the file a graph runs from at ``precision``.

    The variant when the bundle has one for this graph, else the fp32 graph (whose hash
    ``load_bundle`` has checked already). A recorded variant whose file is missing is an error.
    """
    kind = _GRAPH_FILE_PRECISION.get(precision)
    entry = variants(manifest).get(kind, {}).get(graph) if kind else None
    if not entry:
        return manifest.graph_path(graph), None
    if not isinstance(entry, dict) or "file" not in entry:
        raise SalkitError(f"bundle {manifest.root}: malformed {kind} variant record for graph {graph!r}: {entry!r}")
    path = Path(manifest.root or ".") / str(entry["file"])
    if not path.is_file():
        raise SalkitError(f"bundle {manifest.root}: {kind} graph {graph!r} file {entry['file']} is missing (re-export)")
    return path, (str(entry["sha256"]) if entry.get("sha256") else None)


def verify_file(path: Path, sha256: str | None, what: str) -> None:
    if sha256 is None:
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise SalkitError(f"{what}: {path.name} has SHA-256 {actual[:12]}…, manifest says {sha256[:12]}… (file changed or truncated; re-export)")


__all__ = [
    "CPU_BACKEND_PRECISIONS", "PRECISIONS", "PRECISION_CHOICES", "REFERENCE_PLAN", "backend_precisions", "cpu_unusable",
    "gate_records", "gate_verdict", "graph_file", "plan_name", "recorded_choice", "unusable", "variants", "verify_file",
]
