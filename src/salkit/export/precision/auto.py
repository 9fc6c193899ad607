"""``export-trt --precision``: which lower-precision artefacts a bundle keeps and which plan it records.

``auto`` (the default) on the CPU it runs on:

1. int8 (where the CPU has an int8 path): quantize the candidate graphs (the model kind's ``auto_graphs``: its
   ``candidate_graphs`` that the bundle's default predict runs, :mod:`salkit.export.kinds`) on the
   calibration photographs, keep a graph only where its int8 artefact runs faster than float32
   (a short timing of the graph alone, each file on the faster of ONNX Runtime and OpenVINO), then gate the plan on the final maps; while it fails,
   the graph the gate blames goes back to float32 and the rest are judged again;
2. bf16 (an OpenVINO compile hint, no artefact) only where the CPU has native bf16; OpenVINO's
   float32 is judged too (another engine's rounding, which a fixed-point solve can amplify);
3. time a full predict of every passing plan against ort-cpu fp32 and record the fastest, or fp32
   when nothing passes or nothing is faster. Artefacts of plans that did not pass are deleted;
4. beside that single plan, a per-graph plan (each graph on its own engine and precision, chosen by
   timing each graph alone, gated on the final maps with a bisection to the graph to blame, and
   kept only when its predict beats the single plan's): :mod:`salkit.export.precision.mix`.

A forced precision (``fp16``, ``bf16``, ``int8``) writes its artefacts for the graphs of
the kind's ``reduced_graphs`` and must pass the gate, else the export is
refused; ``fp32`` writes none.

What the CPU can do is read by the runtime's reader (:mod:`salkit.runtime.cpu`), so export and the
runtime agree on it, ``SALKIT_CPU_DISABLE`` and ``SALKIT_CPUINFO`` included: a plan recorded here is
one the runtime on the same CPU may run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError
from salkit.export.graphs import GraphDef
from salkit.export.kinds import get_export_kind
from salkit.export.precision.artefacts import ARTEFACT_PRECISIONS, drop_variant, write_variant
from salkit.export.precision.calib import CalibrationImages
from salkit.export.precision.gate import REFERENCE_PLAN, Gate, PlanRunner, run_with_predictor
from salkit.export.precision.mix import MIX, GraphPlanTimer, MixSearch, graph_candidates, time_graph_plans
from salkit.export.precision.timing import GRAPH_REPEATS, PLAN_REPEATS, best_interleaved
from salkit.runtime.bundle import Manifest, plan_name, split_plan
from salkit.runtime.cpu import CpuInfo, cpu_info

PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")
PAYS = 0.9  # a reduced graph is kept only if it runs in at most 90 % of its float32 time
FASTER = 0.95  # a plan replaces fp32 only if its predict takes at most 95 % of fp32's

# (graph files, feeds) → best seconds of each; ([(manifest view, backend, precision)], x) → best seconds of each.
# Repeats alternate between the candidates, so a neighbour's load on the shared cores hits all alike.
GraphTimer = Callable[[list[Path], dict[str, np.ndarray]], list[float]]
PlanTimer = Callable[[list[tuple[Manifest, str, str]], np.ndarray], list[float]]


def openvino_reason(manifest: Manifest | None = None) -> str:
    """"" when the runtime has a usable OpenVINO backend, else why not."""
    from salkit.runtime.backends import BACKENDS, availability

    if "openvino" not in BACKENDS:
        return "this salkit runtime has no openvino backend"
    return availability(manifest).get("openvino", "") or ""


def unsupported_reason(precision: str, cpu: CpuInfo | None = None) -> str:
    """Why a forced ``precision`` cannot be gated on this machine ("" when it can)."""
    cpu = cpu or cpu_info()  # read for every precision: a bad SALKIT_CPU_DISABLE ends the export before it starts
    if precision == "int8" and not cpu.int8:
        return cpu.lacks("int8")
    if precision == "bf16":
        if not cpu.bf16:
            return cpu.lacks("bf16")
        reason = openvino_reason()
        return f"bf16 needs the openvino backend: {reason}" if reason else ""
    return ""


def time_graphs(paths: list[Path], feeds: dict[str, np.ndarray]) -> list[float]:
    """Best seconds of each graph file alone on the fastest engine that runs it here: ONNX Runtime,
    and OpenVINO where the runtime's OpenVINO backend is usable. An int8 artefact pays when either
    engine runs it faster: ONNX Runtime ran the Lite0 latent decoder's in about its float32 time,
    OpenVINO at 2.1× its float32 speed (the per-graph plan then picks the engine)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    calls: list[tuple[int, Callable[[], Any]]] = []
    for i, path in enumerate(paths):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        calls.append((i, lambda s=session: s.run(None, feeds)))
    runners = []
    if not openvino_reason():
        from salkit.runtime.backends.openvino import OpenVinoRunner

        for i, path in enumerate(paths):
            runner = OpenVinoRunner(path, graph=path.stem)
            try:  # an engine that cannot compile a graph (OpenVINO on a QDQ gradient graph) just has no time for it
                runner.load().infer(feeds)
            except SalkitError:
                runner.close()
                continue
            runners.append(runner)
            calls.append((i, lambda r=runner: r.infer(feeds)))
    try:
        best = best_interleaved([call for _, call in calls], GRAPH_REPEATS)
    finally:
        for runner in runners:
            runner.close()
    return [min(t for (j, _), t in zip(calls, best, strict=True) if j == i) for i in range(len(paths))]


def time_plans(plans: list[tuple[Manifest, str, str]], x: np.ndarray) -> list[float]:
    """Best of a few full predicts of one image per plan (bundle defaults: samples, steps)."""
    import inspect

    from salkit.runtime.bundle import HINT_PRECISIONS
    from salkit.runtime.predictor import Predictor

    predictors = []
    named = "precision" in inspect.signature(Predictor).parameters
    try:
        for manifest, backend, precision in plans:
            # Always named where the runtime takes it, as the gate names it: left to auto, "openvino:fp32" ran
            # whatever auto picked on that engine (on an AMD EPYC with bf16: openvino:int8, 424 ms a predict,
            # against 743 for openvino:fp32 itself), and fp32 was recorded as fast as int8.
            if not named and precision in (*HINT_PRECISIONS, MIX):
                raise SalkitError(f"this runtime cannot compile graphs to {precision} (no precision hints)")
            options: dict[str, Any] = {"precision": precision} if named else {}
            predictors.append(Predictor(manifest, backend=backend, fallback=False, **options))
        return best_interleaved([lambda p=p: p.predict_tensor(x, seed=0) for p in predictors], PLAN_REPEATS)
    finally:
        for predictor in predictors:
            predictor.close()


@dataclasses.dataclass
class PrecisionJob:
    manifest: Manifest
    graphs: list[GraphDef]
    directory: Path
    calib: CalibrationImages | None
    int8_scheme: str
    progress: Callable[[str], None]
    # None = this module's functions, looked up when used (tests substitute fast stand-ins).
    cpu: CpuInfo | None = None
    run: PlanRunner | None = None
    graph_timer: GraphTimer | None = None
    plan_timer: PlanTimer | None = None
    graph_plan_timer: GraphPlanTimer | None = None
    _gate: Gate | None = None

    def __post_init__(self) -> None:
        self.cpu = self.cpu or cpu_info()
        self.run = self.run or (lambda *args: run_with_predictor(*args))
        self.graph_timer = self.graph_timer or (lambda *args: time_graphs(*args))
        self.plan_timer = self.plan_timer or (lambda *args: time_plans(*args))
        self.graph_plan_timer = self.graph_plan_timer or (lambda *args: time_graph_plans(*args))

    @property
    def gate(self) -> Gate:
        if self._gate is None:
            assert self.calib is not None
            self.progress(f"precision gate: float32 reference on {self.calib.held.shape[0]} held photographs")
            self._gate = Gate(self.manifest, self.calib.held, self.run)
        return self._gate

    def _graph(self, name: str) -> GraphDef:
        return next(g for g in self.graphs if g.name == name)

    def _rows(self, name: str) -> int:
        """Rows a graph runs on per image in the runtime's loop (the kind's: coop decodes N samples at once)."""
        return get_export_kind(self.manifest.model_kind).rows(self.manifest, name)

    def feeds(self, name: str) -> dict[str, np.ndarray]:
        """A calibration input of graph ``name`` with the rows it runs on per image in the runtime's loop."""
        graph = self._graph(name)
        assert graph.data_inputs is not None
        rows = self._rows(name)
        return {n: np.repeat(t[:1].detach().numpy().astype(np.float32), rows, axis=0)
                for n, t in zip(graph.input_names, graph.feeds(*graph.data_inputs), strict=True)}

    def _speedup(self, name: str, precision: str) -> tuple[float, float]:
        """(fp32 s, reduced s) of one graph alone on a calibration input of the runtime's rows."""
        feeds = self.feeds(name)
        fp32 = self.directory / self.manifest.graphs[name].file
        reduced = self.directory / self.manifest.variants[precision][name]["file"]
        t32, tq = self.graph_timer([fp32, reduced], feeds)
        return t32, tq

    def write(self, precision: str, names: tuple[str, ...], failed: dict[str, str] | None = None) -> list[str]:
        """Write the artefacts of ``names``; with ``failed``, a graph the converter cannot handle is
        recorded there and left in float32 (auto), else its failure ends the export (forced)."""
        written = []
        for name in (n for n in names if n in self.manifest.graphs):
            self.progress(f"{precision}: {name}")
            try:
                write_variant(self.manifest, self._graph(name), self.directory, precision, self.int8_scheme)
            except Exception as err:  # the quantizer raises what it likes (ValueError, RuntimeError, …)
                line = f"{precision} conversion failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                if failed is None:
                    raise SalkitError(f"graph {name!r}: {line}") from None
                failed[name] = line
                drop_variant(self.manifest, self.directory, precision, name)
                (self.directory / f"{name}.{precision}.onnx").unlink(missing_ok=True)
                continue
            written.append(name)
        return written

    def keep_paying(self, precision: str, names: list[str]) -> dict[str, str]:
        """Drop the artefacts that run no faster than float32; returns graph → why dropped."""
        dropped = {}
        for name in names:
            t32, tq = self._speedup(name, precision)
            entry = self.manifest.variants[precision][name]
            entry["validation"].update(seconds_fp32=t32, **{f"seconds_{precision}": tq})
            self.progress(f"{precision}: {name} alone {t32 * 1e3:.1f} → {tq * 1e3:.1f} ms")
            if tq > PAYS * t32:
                dropped[name] = f"{precision} {tq * 1e3:.1f} ms vs fp32 {t32 * 1e3:.1f} ms: does not pay"
                drop_variant(self.manifest, self.directory, precision, name)
        return dropped

    def judge(self, plan: str, prune: bool) -> dict[str, Any]:
        """Gate ``plan``; with ``prune``, send the blamed graph back to float32 until it passes."""
        _, precision = split_plan(plan)
        dropped: dict[str, str] = {}
        while True:
            graphs = sorted(self.manifest.variants.get(precision, {}))
            if precision in ARTEFACT_PRECISIONS and not graphs:
                return {"passed": False, "reason": f"{plan}: no graph left in {precision}", "dropped": dropped}
            self.progress(f"precision gate: {plan} ({', '.join(graphs) or 'every graph'})")
            verdict = self.gate.judge(plan)
            if precision == "int8" and self.int8_scheme == "cpu":
                # 8-bit u8·s8 weights: judged on one kind of int8 unit, they do not carry over to the other
                # (salkit.runtime.precision); 7-bit (cpu7) and symmetric ones are exact on both.
                verdict["int8_vnni"] = self.cpu.int8_vnni
            self.progress(f"precision gate: {verdict['reason']}")
            culprit = verdict.get("culprit")
            if verdict["passed"] or not prune or not culprit:
                verdict["dropped"] = dropped
                return verdict
            dropped[culprit] = verdict["reason"]
            drop_variant(self.manifest, self.directory, precision, culprit)


def apply_precision(job: PrecisionJob, requested: str) -> None:
    """Fill ``variants``, ``precision_gate`` and ``precision_choice`` of ``job.manifest``."""
    if requested not in PRECISION_CHOICES:
        raise SalkitError(f"unknown precision {requested!r} (choose from {', '.join(PRECISION_CHOICES)})")
    manifest, cpu = job.manifest, job.cpu
    manifest.root = job.directory  # the gate's predictors read the graphs being written
    choice = {"plan": REFERENCE_PLAN, "cpu": cpu.model, "requested": requested, "seconds": {}}
    if job.calib is not None:
        manifest.extra["precision_images"] = job.calib.record()
    if requested == "fp32":
        manifest.precision_choice = {**choice, "reason": "--precision fp32"}
        return
    if requested != "auto":
        _forced(job, requested, choice)
        return
    _auto(job, choice)


def _forced(job: PrecisionJob, precision: str, choice: dict[str, Any]) -> None:
    manifest = job.manifest
    reason = unsupported_reason(precision, job.cpu)
    if reason:
        raise SalkitError(f"--precision {precision}: {reason}")
    if job.calib is None:
        raise SalkitError(f"--precision {precision} needs --calib DIR (photographs to "
                          f"{'calibrate and ' if precision == 'int8' else ''}gate it on)")
    backend = "openvino" if precision == "bf16" else "ort-cpu"
    if precision != "bf16":
        job.write(precision, get_export_kind(manifest.model_kind).reduced_graphs)
    plan = plan_name(backend, precision)
    verdict = job.judge(plan, prune=False)
    manifest.precision_gate[plan] = verdict
    if not verdict["passed"]:
        raise SalkitError(f"--precision {precision} refused: {verdict['reason']}")
    manifest.precision_choice = {**choice, "plan": plan, "reason": f"--precision {precision} (passed the gate)"}


def _auto(job: PrecisionJob, choice: dict[str, Any]) -> None:
    manifest, cpu, gate = job.manifest, job.cpu, job.manifest.precision_gate
    ov = openvino_reason(manifest)
    gate[plan_name("ort-cpu", "fp16")] = {"passed": False, "reason": f"fp16 not tried on {cpu.model}: ONNX Runtime's "
                                          "CPU kernels have no native fp16 arithmetic (a GPU precision: force it)"}
    gate[plan_name("openvino", "bf16")] = _bf16(job, ov)
    if not ov and job.calib is not None:
        # Another engine's float32 is another rounding order: a fixed-point solve can amplify it past the gate
        # (the paper QE-FPN on openvino:fp32: max |Δ| 0.051), so the runtime's auto runs it only when judged here.
        gate[plan_name("openvino", "fp32")] = job.judge(plan_name("openvino", "fp32"), prune=False)
    if not cpu.int8:  # the runtime here would not run an int8 plan: none is made
        gate[plan_name("ort-cpu", "int8")] = {"passed": False, "reason": cpu.lacks("int8")}
    elif job.calib is None:
        gate[plan_name("ort-cpu", "int8")] = {"passed": False, "reason": "no --calib photographs to calibrate and gate int8 on"}
    else:
        failed: dict[str, str] = {}
        names = job.write("int8", get_export_kind(manifest.model_kind).auto_graphs(manifest), failed)
        dropped = {**failed, **job.keep_paying("int8", names)}
        verdict = job.judge(plan_name("ort-cpu", "int8"), prune=True)
        verdict["dropped"] = {**dropped, **verdict.get("dropped", {})}
        gate[plan_name("ort-cpu", "int8")] = verdict
        if not ov and manifest.variants.get("int8"):
            gate[plan_name("openvino", "int8")] = job.judge(plan_name("openvino", "int8"), prune=False)
        if not any(v.get("passed") for p, v in gate.items() if p.endswith(":int8")):
            for name in list(manifest.variants.get("int8", {})):
                drop_variant(manifest, job.directory, "int8", name)
    _single_plan(job, choice)
    if job.calib is not None:
        _per_graph_plan(job, ov)


def _single_plan(job: PrecisionJob, choice: dict[str, Any]) -> None:
    """The one plan for every graph: the fastest that passed, if it beats fp32."""
    manifest, gate = job.manifest, job.manifest.precision_gate
    passing = [p for p, v in gate.items() if v.get("passed")]
    if not passing:
        manifest.precision_choice = {**choice, "reason": "no reduced-precision plan passed the gate here"}
        return
    assert job.calib is not None
    x = job.calib.held[:1]
    timed = [REFERENCE_PLAN, *passing]
    job.progress(f"timing {', '.join(timed)} (full predict of one photograph, best of {PLAN_REPEATS})")
    views = [(manifest.at_precision(split_plan(p)[1]), *split_plan(p)) for p in timed]
    seconds = dict(zip(timed, job.plan_timer(views, x), strict=True))
    best = min(passing, key=seconds.__getitem__)
    ratio = seconds[best] / seconds[REFERENCE_PLAN]
    if ratio <= FASTER:
        reason = f"fastest plan that passed the gate: {ratio:.2f}× the time of {REFERENCE_PLAN}"
        manifest.precision_choice = {**choice, "plan": best, "reason": reason, "seconds": seconds}
    else:
        reason = f"no plan that passed the gate is faster than {REFERENCE_PLAN} (best {best}: {ratio:.2f}×)"
        manifest.precision_choice = {**choice, "reason": reason, "seconds": seconds}


def _per_graph_plan(job: PrecisionJob, openvino: str) -> None:
    """Beside the single plan: each graph on its own engine and precision (salkit.export.precision.mix)."""
    manifest = job.manifest
    graphs = [g for g in get_export_kind(manifest.model_kind).auto_graphs(manifest) if g in manifest.graphs]
    assert job.cpu is not None and job.graph_plan_timer is not None and job.plan_timer is not None
    search = MixSearch(manifest, job.gate, graphs, {g: graph_candidates(manifest, g, job.cpu, openvino) for g in graphs},
                       job.feeds, job.graph_plan_timer, job.plan_timer, job.progress, FASTER)
    record = search.run(manifest.precision_choice.get("plan") or REFERENCE_PLAN)
    if job.int8_scheme == "cpu" and any(p.endswith(":int8") for p in record.get("graphs", {}).values()):
        record["int8_vnni"] = job.cpu.int8_vnni  # 8-bit u8·s8 weights: judged on this kind of int8 unit only
    job.progress(f"per-graph plan: {record['mix_reason']}")
    manifest.precision_choice.update(record)


def _bf16(job: PrecisionJob, openvino: str) -> dict[str, Any]:
    if not job.cpu.bf16:
        return {"passed": False, "reason": job.cpu.lacks("bf16")}
    if openvino:
        return {"passed": False, "reason": f"bf16 needs the openvino backend: {openvino}"}
    if job.calib is None:
        return {"passed": False, "reason": "no --calib photographs to gate bf16 on"}
    return job.judge(plan_name("openvino", "bf16"), prune=False)
