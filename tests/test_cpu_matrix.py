"""The CPU matrix: export's precision choice, the runtime's plan chooser and ``sal-runtime serve``'s
start-up under every simulated capability set (tests/fixtures/cpus.py), on the toy coop bundle.

Stand-ins keep it quick and its verdicts free of the real CPU: export's int8 artefacts are copies
of the float32 graphs, the gate's predictor returns equal maps, and every plan has a fixed time
(SECONDS). What is real is every decision that depends on the CPU: which plans export gates and
records, which plans the runtime allows and picks, and what it says when it falls back.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from salkit.export.bundle_writer import ExportOptions, _int8_scheme
from salkit.export.precision.auto import PrecisionJob, apply_precision
from salkit.export.precision.calib import CalibrationImages
from salkit.runtime.bundle import Manifest, load_bundle, sha256_file
from salkit.runtime.plan import choose_plan
from tests.fixtures.cpus import CPU_NAMES
from tests.runtime.toy_bundles import SIZE

pytest.importorskip("openvino")  # the matrix below is written for both CPU backends (salkit[all] installs it)

# Stand-in predict times: bf16 is fastest where it may run, then int8; OpenVINO's fp32 beats ORT's.
SECONDS = {"openvino:bf16": 0.4, "ort-cpu:int8": 0.5, "openvino:int8": 0.6, "openvino:fp32": 0.9, "ort-cpu:fp32": 1.0}
F, I, B = "openvino:fp32", "ort-cpu:int8", "openvino:bf16"  # noqa: E741 — F, I, B name the plans in the tables below, one letter each
# What export records there: with no reduced plan, OpenVINO's fp32 (gated like any plan, passed) beats the reference.
RECORDED = {"none": F, "avx2": I, "avx512": I, "avx512_bf16": B, "amx": B}
# RUNS[exported on][run on]: the plan the runtime takes. An int8 exported with VNNI (8-bit weights)
# does not run on AVX2 alone; one exported without (7-bit, "cpu7") runs wherever int8 does.
RUNS = {
    "none": {"none": F, "avx2": F, "avx512": F, "avx512_bf16": F, "amx": F},
    "avx2": {"none": F, "avx2": I, "avx512": I, "avx512_bf16": I, "amx": I},
    "avx512": {"none": F, "avx2": F, "avx512": I, "avx512_bf16": I, "amx": I},
    "avx512_bf16": {"none": F, "avx2": F, "avx512": I, "avx512_bf16": B, "amx": B},
    "amx": {"none": F, "avx2": F, "avx512": I, "avx512_bf16": B, "amx": B},
}


def probe(manifest: Manifest, backend: str, precision: str, threads: int | None) -> float:
    return SECONDS[f"{backend}:{precision}"]


def same_maps(manifest: Manifest, backend: str, precision: str, x: np.ndarray) -> dict[str, np.ndarray]:
    maps = np.full((x.shape[0], 1, SIZE, SIZE), 0.5)
    return {"saliency": maps, "predictive": maps, "aleatoric": maps, "epistemic": maps}


class ToyJob(PrecisionJob):
    """export's ``auto`` on a bundle without torch graph definitions: an int8 artefact is a copy
    of its float32 graph, and it times half its float32 graph alone."""

    def write(self, precision: str, names: tuple[str, ...], failed: dict[str, str] | None = None) -> list[str]:
        for name in names:
            target = self.directory / f"{name}.{precision}.onnx"
            shutil.copyfile(self.directory / self.manifest.graphs[name].file, target)
            self.manifest.variants.setdefault(precision, {})[name] = {"file": target.name, "sha256": sha256_file(target),
                                                                      "validation": {}}
        return list(names)

    def _speedup(self, name: str, precision: str) -> tuple[float, float]:
        return 1.0, 0.5

    def feeds(self, name: str) -> dict:
        return {}  # the stand-in timers read no input


def export_on(cpu: str, toy: Path, out: Path, simulated_cpu) -> Manifest:
    """The toy bundle given export's ``auto`` precision on the simulated ``cpu``."""
    simulated_cpu(cpu)
    shutil.copytree(toy, out)
    manifest = load_bundle(out)
    held = np.zeros((2, 3, SIZE, SIZE), np.float32)
    calib = CalibrationImages(calibration=held, held=held, held_overlaps_calibration=True, source="stand-in", unreadable=[])
    scheme = _int8_scheme(ExportOptions(ckpt=out / "none.pt", out=out, build_engines=False))  # the CPU's scheme
    apply_precision(ToyJob(manifest, [], out, calib, scheme, lambda _: None, run=same_maps,
                           plan_timer=lambda plans, x: [SECONDS[f"{b}:{p}"] for _, b, p in plans],
                           # every graph alone as fast as its plan: each graph's fastest is the same plan, so no mix
                           graph_plan_timer=lambda m, graph, plans, feeds: [SECONDS[p] for p in plans]), "auto")
    manifest.write(out)
    return load_bundle(out)


@pytest.mark.parametrize("exported", CPU_NAMES)
def test_a_bundle_exported_on_one_cpu_runs_on_every_other(exported: str, toy_coop, tmp_path, simulated_cpu) -> None:
    manifest = export_on(exported, toy_coop.path, tmp_path / "bundle", simulated_cpu)
    assert manifest.precision_choice["plan"] == RECORDED[exported]
    assert manifest.precision_gate["openvino:bf16"]["passed"] == (exported in ("avx512_bf16", "amx"))
    if exported == "none":
        assert "int8 needs AVX2" in manifest.precision_gate["ort-cpu:int8"]["reason"] and not manifest.variants
    else:  # 8-bit weights (a VNNI CPU's scheme) record the unit they were judged on; 7-bit ones run on either
        assert manifest.precision_gate["ort-cpu:int8"].get("int8_vnni") == (True if exported != "avx2" else None)
    for run in CPU_NAMES:
        cpu = simulated_cpu(run)
        plan = choose_plan(manifest, threads=1, probe=probe)
        assert plan.name == RUNS[exported][run], (run, plan.reason)
        assert cpu.supports(plan.precision)
        if plan.name != RECORDED[exported] and RECORDED[exported] != "ort-cpu:fp32":  # says why it falls back
            assert f"the bundle's recorded choice {RECORDED[exported]} is not used here: " in plan.reason, plan.reason
        if run in ("none", "amx"):  # the two far ends really run it
            from salkit.runtime.predictor import Predictor

            with Predictor(manifest, threads=1, plan=plan) as predictor:
                out = predictor.predict_tensor(np.zeros((1, 3, SIZE, SIZE), np.float32), seed=0, samples=2, steps=1)
            assert np.isfinite(out["saliency"]).all()


@pytest.mark.parametrize("cpu", CPU_NAMES)
def test_serve_announces_the_plan_its_predictor_runs(cpu: str, toy_coop, tmp_path, simulated_cpu, monkeypatch) -> None:
    """An AMX-exported bundle served on each CPU: the start-up line names the predictor's plan."""
    from click.testing import CliRunner

    from salkit.runtime import predictor as predictor_module
    from salkit.runtime.server import run
    from salkit.runtime.server.cmd_serve import serve

    bundle = export_on("amx", toy_coop.path, tmp_path / "bundle", simulated_cpu)
    simulated_cpu(cpu)
    ran: list[str] = []

    def server(load, **options):  # the predictor serve would serve, no sockets
        with load() as predictor:
            ran.append(predictor.plan)
        return 0

    monkeypatch.setattr(run, "run_server", server)
    monkeypatch.setattr(predictor_module, "probe_predict", probe)
    result = CliRunner().invoke(serve, ["--engine", str(bundle.root), "--threads", "1"])
    output = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == 0, output
    announced = re.search(r"^salkit serve: coop bundle \S+ on http://127\.0\.0\.1:8000, plan (\S+): ", output, re.M)
    assert announced and ran == [announced.group(1)] == [RUNS["amx"][cpu]], output


def test_a_forced_plan_this_cpu_lacks_is_named_with_the_one_that_runs(toy_coop, tmp_path, simulated_cpu, monkeypatch) -> None:
    from click.testing import CliRunner

    from salkit.runtime.server import run
    from salkit.runtime.server.cmd_serve import serve

    bundle = export_on("amx", toy_coop.path, tmp_path / "bundle", simulated_cpu)
    simulated_cpu("avx2")
    monkeypatch.setattr(run, "run_server", lambda load, **options: load().close() or 0)
    result = CliRunner().invoke(serve, ["--engine", str(bundle.root), "--backend", "openvino", "--precision", "bf16"])
    output = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == 0, output
    [line] = [line for line in output.splitlines() if "bf16" in line]
    assert line.endswith("plan openvino:fp32: openvino:bf16 was requested, but this CPU cannot run it: bf16 needs AMX-BF16 "
                         "or AVX512-BF16, which this CPU (simulated AMD EPYC 7B13 (AVX2)) lacks; runs openvino:fp32 instead")
