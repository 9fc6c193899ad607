"""Per-graph plans at export: the fastest candidate per graph, a bisecting gate that names the graph
to blame, and the record in the manifest. Which candidates exist is fixed by ``simulated_cpu`` and
which is fastest by stand-in timers: nothing here depends on the CPU that runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from salkit.export.bundle_writer import ExportOptions, export_bundle
from salkit.export.cli import summary_line
from salkit.export.precision import auto as precision_auto
from salkit.export.precision.gate import Gate, failures
from salkit.export.precision.mix import MixSearch, graph_candidates, mix_view
from salkit.runtime.bundle import load_bundle, sha256_file
from salkit.runtime.graph_plans import describe
from salkit.runtime.predictor import Predictor
from tests.export.test_precision_gate import HAS_OPENVINO, _corrupted_copy, _held, _StandIns

GRAPHS = ["encoder", "latent_decoder", "energy_grad"]
# Graphs alone: int8 is fastest where it exists; energy_grad has no int8 artefact here.
GRAPH_SECONDS = {"ort-cpu:fp32": 1.0, "openvino:fp32": 1.1, "ort-cpu:int8": 0.5, "openvino:int8": 0.6, "openvino:bf16": 0.7}


def _graph_timer(manifest, graph, plans, feeds):
    return [GRAPH_SECONDS[plan] for plan in plans]


def _mix_wins(plans, x):
    return [0.5 if precision == "mix" else 1.0 for _, backend, precision in plans]


def _search(manifest, gate: Gate, cpu, openvino: str = "") -> MixSearch:
    candidates = {g: graph_candidates(manifest, g, cpu, openvino) for g in GRAPHS}
    return MixSearch(manifest, gate, GRAPHS, candidates, lambda g: {}, _graph_timer, _mix_wins, lambda line: None, 0.95)


def test_the_bisecting_gate_names_a_corrupted_graph_inside_a_mix(tmp_path: Path, strong_coop_bundle: Path,
                                                                 synthetic_dataset: Path, simulated_cpu) -> None:
    cpu = simulated_cpu("avx512")  # int8 native; openvino left out: ONNX Runtime alone mixes fp32 and int8 graphs
    bundle = tmp_path / "b"
    shutil.copytree(strong_coop_bundle, bundle)
    manifest = load_bundle(bundle)
    # encoder: an exact copy (harmless); latent_decoder: an "int8" artefact with scrambled weights.
    shutil.copyfile(bundle / "encoder.onnx", bundle / "encoder.int8.onnx")
    _corrupted_copy(bundle / "latent_decoder.onnx", bundle / "latent_decoder.int8.onnx", 1.6, noise=1.0)
    manifest.variants = {"int8": {g: {"file": f"{g}.int8.onnx", "sha256": sha256_file(bundle / f"{g}.int8.onnx")}
                                  for g in ("encoder", "latent_decoder")}}
    gate = Gate(manifest, _held(manifest, synthetic_dataset))
    record = _search(manifest, gate, cpu, openvino="left out of this test").run("ort-cpu:fp32")
    assert [(b["graph"], b["plan"]) for b in record["mix_blamed"]] == [("latent_decoder", "ort-cpu:int8")]
    assert "bisection" in record["mix_blamed"][0]["reason"] and "saliency" in record["mix_blamed"][0]["reason"]
    assert record["graphs"] == {"encoder": "ort-cpu:int8", "latent_decoder": "ort-cpu:fp32", "energy_grad": "ort-cpu:fp32"}
    assert not failures(record["mix_gate"]) and record["mix_seconds"] < record["mix_single_seconds"]
    assert record["graph_seconds"]["latent_decoder"] == {"ort-cpu:fp32": 1.0, "ort-cpu:int8": 0.5}
    # The kept mix, run by the runtime, equals float32 within the gate.
    with Predictor(mix_view(manifest, record["graphs"]), precision="mix") as mixed:
        assert mixed.graph_plans == record["graphs"]
        got = mixed.predict_tensor(gate.images, seed=0)["saliency"]
    delta = np.abs(got - gate.reference["saliency"])
    assert delta.max() <= 0.05 and delta.mean() <= 0.003


def test_one_plan_for_every_graph_that_failed_the_gate_is_bisected_not_kept_or_dropped(
        tmp_path: Path, strong_coop_bundle: Path, synthetic_dataset: Path, simulated_cpu) -> None:
    """Every graph is fastest on int8, and int8 for every graph failed the gate: the search must not
    stop at "a single plan", but find the graph to blame and keep the others on int8."""
    cpu = simulated_cpu("avx512")
    bundle = tmp_path / "b"
    shutil.copytree(strong_coop_bundle, bundle)
    manifest = load_bundle(bundle)
    for graph in ("encoder", "energy_grad"):  # exact copies: harmless
        shutil.copyfile(bundle / f"{graph}.onnx", bundle / f"{graph}.int8.onnx")
    _corrupted_copy(bundle / "latent_decoder.onnx", bundle / "latent_decoder.int8.onnx", 1.6, noise=1.0)
    manifest.variants = {"int8": {g: {"file": f"{g}.int8.onnx", "sha256": sha256_file(bundle / f"{g}.int8.onnx")}
                                  for g in GRAPHS}}
    manifest.precision_gate = {"ort-cpu:int8": {"passed": False, "reason": "saliency max |Δ| too large"}}
    gate = Gate(manifest, _held(manifest, synthetic_dataset))
    record = _search(manifest, gate, cpu, openvino="left out of this test").run("ort-cpu:fp32")
    assert [(b["graph"], b["plan"]) for b in record["mix_blamed"]] == [("latent_decoder", "ort-cpu:int8")]
    assert record["graphs"] == {"encoder": "ort-cpu:int8", "latent_decoder": "ort-cpu:fp32", "energy_grad": "ort-cpu:int8"}
    assert record["mix_gate"]["passed"] is True
    # The same uniform plan, once it has passed the gate, is the single plan and is not judged again.
    manifest.precision_gate["ort-cpu:int8"] = {"passed": True}
    search = _search(manifest, gate, cpu, openvino="left out of this test")
    search._judge = lambda mix: (_ for _ in ()).throw(AssertionError("judged a plan that had passed"))
    for graph in GRAPHS:
        shutil.copyfile(bundle / f"{graph}.onnx", bundle / f"{graph}.int8.onnx")
    record = search.run("ort-cpu:int8")
    assert "graphs" not in record and record["mix_reason"].endswith("ort-cpu:int8: a single plan, not a mix")


def test_a_mix_that_is_one_plan_for_every_graph_or_no_faster_is_not_kept(tmp_path: Path, tiny_coop_bundle: Path,
                                                                          synthetic_dataset: Path, simulated_cpu) -> None:
    cpu = simulated_cpu("none")  # no int8, no bf16: fp32 on ort-cpu or OpenVINO
    manifest = load_bundle(tiny_coop_bundle)
    gate = Gate(manifest, _held(manifest, synthetic_dataset, n=1))
    record = _search(manifest, gate, cpu, openvino="left out").run("ort-cpu:fp32")
    assert "graphs" not in record and record["mix_reason"] == "one candidate plan per graph here: no per-graph plan"
    if not HAS_OPENVINO:
        return
    search = _search(manifest, gate, cpu)
    search.graph_timer = lambda m, graph, plans, feeds: [0.5 if (graph == "encoder") == (p == "openvino:fp32") else 1.0
                                                         for p in plans]
    search.plan_timer = lambda plans, x: [1.0, 0.99]  # the mix: 0.99× the single plan's time, not ≤ 0.95×
    record = search.run("ort-cpu:fp32")
    assert "graphs" not in record and "not kept" in record["mix_reason"] and record["mix_gate"]["passed"] is True


class _WrongInMix:
    """The gate's predictor stand-in: a per-graph plan that runs latent_decoder's int8 artefact is
    wrong (the single int8 plan is not: the mix's own gate must find it)."""

    def run(self, manifest, backend, precision, x):
        wrong = precision == "mix" and ".int8." in manifest.graphs["latent_decoder"].file
        sal = np.full((x.shape[0], 1, 4, 4), 0.5 + (0.2 if wrong else 0.0))
        return {"saliency": sal, "predictive": sal, "aleatoric": sal, "epistemic": sal}

    graph_timer = staticmethod(_StandIns.graph_timer)  # int8 files time at half of float32's

    @staticmethod
    def plan_timer(plans, x):
        return [{"ort-cpu:fp32": 1.0, "ort-cpu:int8": 0.8, "openvino:int8": 0.9, "auto:mix": 0.6}[f"{b}:{p}"]
                for _, b, p in plans]


def test_export_records_the_mix_its_timings_and_the_graph_the_gate_blamed(tmp_path: Path, untrained_coop_checkpoint: Path,
                                                                         synthetic_dataset: Path, monkeypatch,
                                                                         simulated_cpu) -> None:
    simulated_cpu("avx512")  # int8, no bf16
    fakes = _WrongInMix()
    monkeypatch.setattr(precision_auto, "run_with_predictor", fakes.run)
    monkeypatch.setattr(precision_auto, "time_graphs", fakes.graph_timer)
    monkeypatch.setattr(precision_auto, "time_plans", fakes.plan_timer)
    # energy_grad's int8 artefact does not pay alone under this timer: the mix is not one plan for every graph
    monkeypatch.setattr(precision_auto, "time_graph_plans", lambda m, graph, plans, feeds: [
        1.2 if (graph, p) == ("energy_grad", "ort-cpu:int8") else GRAPH_SECONDS[p] for p in plans])
    monkeypatch.setattr(precision_auto, "openvino_reason", lambda manifest=None: "left out of this test")
    out = tmp_path / "auto"
    # The training's K: the step gate could keep 0 steps, and then energy_grad (never run) is no candidate.
    export_bundle(ExportOptions(ckpt=untrained_coop_checkpoint, out=out, calib=synthetic_dataset, build_engines=False,
                                energy_steps="trained"))
    choice = load_bundle(out).precision_choice
    assert choice["plan"] == "ort-cpu:int8"  # the single plan stays, for runtimes without per-graph plans
    assert sorted(load_bundle(out).variants["int8"]) == ["encoder", "energy_grad", "latent_decoder"]  # paid, passed alone
    assert choice["mix_blamed"][0]["graph"] == "latent_decoder" and choice["mix_blamed"][0]["plan"] == "ort-cpu:int8"
    assert choice["graph_seconds"]["encoder"] == {"ort-cpu:fp32": 1.0, "ort-cpu:int8": 0.5}
    assert choice["graphs"] == {"encoder": "ort-cpu:int8", "latent_decoder": "ort-cpu:fp32", "energy_grad": "ort-cpu:fp32"}
    assert choice["mix_seconds"] == 0.6 and choice["mix_single_seconds"] == 0.8
    assert choice["mix_gate"]["passed"] is True and choice["int8_vnni"] is True
    plan = Predictor.from_bundle(out, probe=lambda *args: 1.0)
    with plan:
        assert plan.graph_plans == choice.get("graphs", {})
        assert plan.plan_line.startswith("plan per graph (encoder ort-cpu:int8, latent_decoder ort-cpu:fp32")
    # export's last line names the per-graph plan the runtime's auto runs first, not only the single plan
    line = summary_line(out, load_bundle(out))
    assert "precision ort-cpu:int8 (" in line
    per_graph = line.split("; plan per graph ", 1)[1]
    assert per_graph.startswith(describe(load_bundle(out).precision_choice["graphs"]) + " (per-graph plan passed the gate")
    assert all(f"{graph} {plan}" in per_graph for graph, plan in choice["graphs"].items())


def test_each_graph_is_timed_on_the_rows_the_loop_runs_it_on(tiny_coop_bundle: Path) -> None:
    """The latent decoder runs on the N samples of an image at once; the encoder once, and the energy's steps
    on the samples' mean: one row each (timing energy_grad on N rows made its plans' times N× the loop's)."""
    from salkit.export.kinds import get_export_kind

    manifest = load_bundle(tiny_coop_bundle)
    kind, samples = get_export_kind("coop"), int(manifest.coop["samples"])
    assert samples > 1
    assert {g: kind.rows(manifest, g) for g in GRAPHS} == {"encoder": 1, "latent_decoder": samples, "energy_grad": 1}


def test_a_plan_that_cannot_run_a_graph_is_no_candidate_for_it(tmp_path: Path, tiny_coop_bundle: Path) -> None:
    """Measured here: OpenVINO could not compile a QDQ energy_grad. Such a plan times as inf, the export goes on."""
    from salkit.export.precision.mix import time_graph_plans

    assert "plan per graph" not in summary_line(tiny_coop_bundle, load_bundle(tiny_coop_bundle))  # none kept: not named

    bundle = tmp_path / "b"
    shutil.copytree(tiny_coop_bundle, bundle)
    manifest = load_bundle(bundle)
    (bundle / "encoder.int8.onnx").write_bytes(b"not an onnx graph")
    manifest.variants = {"int8": {"encoder": {"file": "encoder.int8.onnx"}}}
    size = manifest.input_size
    feeds = {"image": np.zeros((1, 3, size, size), np.float32)}
    fp32, int8 = time_graph_plans(manifest, "encoder", ["ort-cpu:fp32", "ort-cpu:int8"], feeds)
    assert np.isfinite(fp32) and int8 == float("inf")
