"""``sal-runtime bench`` on the toy bundles: the JSON record's keys and its internal arithmetic,
FLOP counting against torch's own layer shapes, the fp32 comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from salkit.runtime.bench.flops import _matmul_session, gemm_rates, graph_flops
from salkit.runtime.cli.main import main
from salkit.runtime.predictor import Predictor
from tests.runtime.toy_bundles import LATENT, SIZE, ToyCoop, build_coop_bundle

KEYS = {"images_per_s", "p50_ms", "p99_ms", "torch_images_per_s", "speedup_vs_torch", "roofline_fraction",
        "speedup_vs_fp32", "mae_delta", "gflop_per_image", "paths"}


def torch_flops(module: nn.Module, *args: torch.Tensor) -> int:
    """Dense FLOPs of one forward, from torch's layers and the shapes they actually see."""
    total = 0

    def hook(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            total += 2 * output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, nn.Linear):
            total += 2 * output.numel() * layer.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(*args)
    for h in handles:
        h.remove()
    return total


def test_graph_flops_match_torch_layer_count(toy_coop) -> None:
    model = toy_coop.model
    x = torch.zeros(1, 3, SIZE, SIZE)
    assert graph_flops(toy_coop.path / "encoder.onnx") == torch_flops(model.encoder, x)
    assert graph_flops(toy_coop.path / "generator.onnx") == torch_flops(model.generator, x, torch.zeros(1, LATENT))
    assert graph_flops(toy_coop.path / "encoder.onnx") > 0


def test_gemm_peak_is_the_best_kernel_and_the_onnxruntime_kernel_multiplies(monkeypatch) -> None:
    from salkit.runtime.bench import flops as bench_flops

    rates = gemm_rates(size=256, repeats=2)
    assert set(rates) == {"numpy", "onnxruntime"} and all(0.1 < r < 1e5 for r in rates.values())
    # The peak is the best kernel's rate (two timings of a shared machine are not compared here).
    monkeypatch.setattr(bench_flops, "gemm_rates", lambda size, repeats: {"numpy": 3.0, "onnxruntime": 7.0})
    assert bench_flops.gemm_peak_gflops(size=256, repeats=2) == 7.0
    a, b = np.random.default_rng(0).standard_normal((2, 64, 64), dtype=np.float32)
    (product,) = _matmul_session(64).run(None, {"a": a, "b": b})  # the timed graph is a real GEMM
    np.testing.assert_allclose(product, a @ b, rtol=1e-4, atol=1e-4)


def _bench(*args: str):
    return CliRunner().invoke(main, ["bench", "--gemm-size", "256", *map(str, args)], catch_exceptions=False)


def test_bench_record_coop(toy_coop, tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = _bench("--engine", toy_coop.path, "--batch", "1,2", "--repeat", "3", "--threads", "1", "--json", out)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["plan"] in ("ort-cpu:fp32", "openvino:fp32") and record["plan"] == f"{record['backend']}:{record['precision']}"
    machine = record["machine"]
    peaks, fp32_rates = machine["gemm_peaks_gflops"], machine["gemm_rates_gflops"]["fp32"]
    assert machine["gemm_peak_gflops"] == peaks["fp32"] == max(fp32_rates.values()) > 0
    assert machine["gemm_peak_precision"] == "fp32" and machine["cpu"]["model"]
    # Every installed engine counts, torch too (through the bench plug-in, installed with salkit[train] here).
    assert machine["gemm_engines"]["torch"] == "measured" and fp32_rates["torch"] > 0
    assert {"numpy", "onnxruntime"} <= set(fp32_rates) and fp32_rates[machine["gemm_peak_engine"]] == peaks["fp32"]
    assert machine["gemm_peak_engines"]["fp32"] == machine["gemm_peak_engine"]
    assert machine["plan_engine"] == {"ort-cpu": "onnxruntime", "openvino": "openvino"}[record["backend"]]
    assert machine["plan_engine_gemm_gflops"] == fp32_rates[machine["plan_engine"]]
    m = toy_coop.manifest
    n, k = m.coop["samples"], m.coop["langevin_steps"]
    flops = {g: graph_flops(toy_coop.path / f"{g}.onnx") for g in ("encoder", "latent_decoder", "generator", "energy_grad")}
    for batch in ("1", "2"):
        entry = record["coop"][batch]
        assert KEYS <= set(entry)
        assert set(entry["paths"]) == {"split", "whole"}
        split = entry["paths"]["split"]
        assert entry["images_per_s"] == split["images_per_s"] == pytest.approx(int(batch) / (split["p50_ms"] / 1e3))
        assert split["p99_ms"] >= split["p50_ms"] > 0
        assert split["gflop_per_image"] * 1e9 == pytest.approx(flops["encoder"] + n * flops["latent_decoder"] + k * flops["energy_grad"])
        assert entry["paths"]["whole"]["gflop_per_image"] * 1e9 == pytest.approx(n * flops["generator"] + k * flops["energy_grad"])
        achieved = split["gflop_per_image"] * int(batch) / (split["p50_ms"] / 1e3)
        assert entry["roofline_fraction"] == pytest.approx(achieved / machine["gemm_peak_gflops"])
        assert entry["roofline_fraction_plan_engine"] == pytest.approx(achieved / machine["plan_engine_gemm_gflops"])
        assert split["graph_gflop_per_image"] == pytest.approx({"encoder": flops["encoder"] / 1e9, "latent_decoder": n * flops[
            "latent_decoder"] / 1e9, "energy_grad": k * flops["energy_grad"] / 1e9})
        assert entry["roofline_fraction_per_graph"] == pytest.approx(entry["roofline_fraction"])  # one precision: the same
        assert entry["torch_images_per_s"] is None and entry["mae_delta"] is None  # not asked for: null, not made up
        assert entry["torch_best_recipe_images_per_s"] is None and entry["speedup_vs_torch_best"] is None
        _check_breakdown(entry, {"encoder": 1, "latent_decoder": 1, "energy_grad": k})
    assert "img/s" in result.output and "host" in result.output
    # The record names what it timed, and the text every precision's peak with the engine that set it.
    assert record["model"]["kind"] == "coop" and set(record["model"]) == {"kind", "name", "backbone", "checkpoint_sha256"}
    assert set(machine["load_average"]) == {"start", "end"}  # how busy the machine was: a ratio's context
    assert isinstance(record["graph_plans"], dict)  # {} for one plan, graph → plan for a per-graph one
    assert f"GEMM peaks per precision, best engine: fp32 {peaks['fp32']:.0f} ({machine['gemm_peak_engines']['fp32']})" in result.output


def _check_breakdown(entry: dict, calls: dict[str, int]) -> None:
    """The split predict's graph time is Σ calls × each graph's p50; the host time is the rest."""
    parts = entry["breakdown"]
    assert parts["graph_calls"] == calls and set(parts["graphs_p50_ms"]) == set(calls)
    assert all(ms > 0 for ms in parts["graphs_p50_ms"].values())
    assert parts["graphs_ms"] == pytest.approx(sum(calls[g] * ms for g, ms in parts["graphs_p50_ms"].items()))
    assert parts["host_ms"] == pytest.approx(entry["p50_ms"] - parts["graphs_ms"])
    assert parts["host_fraction"] == pytest.approx(parts["host_ms"] / entry["p50_ms"])


@pytest.mark.parametrize("toy", ["toy_coop", "toy_qefpn"])
def test_graph_runs_count_the_runs_a_predict_makes(toy, request) -> None:
    bundle = request.getfixturevalue(toy)
    with Predictor.from_bundle(bundle.path, backend="ort-cpu", threads=1) as predictor:
        kind = predictor.runtime_kind
        samples, steps = kind.defaults(predictor.manifest, None, None)
        runs = kind.graph_runs(samples, steps)["split"]
        counted = dict.fromkeys(runs, 0)
        for name in runs:  # each loop keeps its runners under the graphs' names
            runner = getattr(predictor.loop.runners, name)

            def counting(binding, name=name, run=runner.run):
                counted[name] += 1
                return run(binding)

            runner.run = counting
        predictor.predict_tensor(np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert counted == {name: run.calls for name, run in runs.items()} and steps > 1


def test_bench_against_an_fp32_bundle(toy_coop, tmp_path) -> None:
    other = tmp_path / "other"
    build_coop_bundle(other, ToyCoop(seed=1))
    out = tmp_path / "b.json"
    assert _bench("--engine", toy_coop.path, "--fp32", toy_coop.path, "--batch", "2", "--repeat", "2", "--json", out).exit_code == 0
    same = json.loads(out.read_text())["coop"]["2"]
    assert same["mae_delta"] == 0.0 and same["speedup_vs_fp32"] > 0
    assert _bench("--engine", toy_coop.path, "--fp32", other, "--batch", "2", "--repeat", "2", "--json", out).exit_code == 0
    assert json.loads(out.read_text())["coop"]["2"]["mae_delta"] > 1e-3


def test_bench_qefpn_and_bad_options(toy_qefpn, tmp_path) -> None:
    out = tmp_path / "q.json"
    assert _bench("--engine", toy_qefpn.path, "--batch", "2", "--repeat", "2", "--json", out).exit_code == 0
    entry = json.loads(out.read_text())["qefpn"]["2"]
    t = toy_qefpn.manifest.qefpn["broyden_iterations"]
    count = lambda name: graph_flops(toy_qefpn.path / f"{name}.onnx")
    expected = count("encoder") + (t + 1) * count("f") + count("decoder")
    assert entry["gflop_per_image"] * 1e9 == pytest.approx(expected)
    _check_breakdown(entry, {"encoder": 1, "f": t + 1, "decoder": 1})
    result = _bench("--engine", toy_qefpn.path, "--batch", "1,x")
    assert result.exit_code == 2 and "--batch" in result.output
    assert np.isfinite(entry["images_per_s"])


def test_int8_and_openvino_peak_graphs_multiply() -> None:
    """The int8 peak times a real u8 × s8 product (and the OpenVINO QDQ graph a real float one)."""
    import onnxruntime as ort

    from salkit.runtime.bench.peaks import _matmul_model, gemm_peaks

    rng = np.random.default_rng(0)
    # Activations below 128: on AVX2 without VNNI, MLAS sums u8·s8 pairs in int16 and saturates with
    # full-range u8 (measured here: errors up to 46005 of 303377); the peak's timing does not care.
    a, b = rng.integers(0, 128, (64, 64), dtype=np.uint8), rng.integers(-128, 128, (64, 64), dtype=np.int8)
    (product,) = ort.InferenceSession(_matmul_model(64, "integer"), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})
    assert np.array_equal(product, a.astype(np.int32) @ b.astype(np.int32))
    peaks = gemm_peaks(size=128, repeats=1)
    assert peaks["int8"]["onnxruntime"] > 0 and peaks["fp32"]["onnxruntime"] > 0
    assert set(peaks) == {"fp32", "bf16", "int8"}


def _record(achieved: float) -> dict:
    return {"machine": {}, "coop": {"1": {"paths": {"split": {"achieved_gflops": achieved}, "whole": {"achieved_gflops": achieved / 2}}}}}


def test_roofline_is_the_fraction_of_the_best_engine_not_the_plans_own() -> None:
    """The peak of a precision is the maximum over every engine's rate (best of the two
    measurements each), named by the engine that set it; the plan's own engine is only a comparison."""
    from salkit.runtime.bench.record import _finish_peaks

    first = {"fp32": {"numpy": 120.0, "onnxruntime": 250.0, "openvino": 200.0, "torch": 240.0},
             "bf16": {"openvino": 432.0, "torch": 1631.0}, "int8": {"onnxruntime": 1966.0, "openvino": 300.0}}
    again = {"fp32": {"numpy": 130.0, "onnxruntime": 240.0, "openvino": 210.0, "torch": 260.0},
             "bf16": {"openvino": 519.0, "torch": 1500.0}, "int8": {"onnxruntime": 1900.0, "openvino": 310.0}}
    record = _record(300.0)
    _finish_peaks(record, "coop", first, again, "bf16", "openvino")  # the AMX Xeon: openvino:bf16 at 300 GFLOP/s
    machine, entry = record["machine"], record["coop"]["1"]
    assert machine["gemm_peak_gflops"] == 1631.0 and machine["gemm_peak_engine"] == "torch"
    assert machine["gemm_peak_precision"] == "bf16" and machine["gemm_peak_samples_gflops"] == [1631.0, 1500.0]
    assert machine["gemm_peaks_gflops"] == {"fp32": 260.0, "bf16": 1631.0, "int8": 1966.0}
    assert machine["gemm_peak_engines"] == {"fp32": "torch", "bf16": "torch", "int8": "onnxruntime"}
    assert machine["gemm_rates_gflops"]["bf16"] == {"openvino": 519.0, "torch": 1631.0}  # best of two per engine
    assert entry["roofline_fraction"] == pytest.approx(300.0 / 1631.0)  # not 300 / 519, the plan engine's
    assert entry["paths"]["whole"]["roofline_fraction"] == pytest.approx(150.0 / 1631.0)
    assert machine["plan_engine"] == "openvino" and machine["plan_engine_gemm_gflops"] == 519.0
    assert entry["roofline_fraction_plan_engine"] == pytest.approx(300.0 / 519.0)
    from salkit.runtime.bench.record import peaks_line

    assert peaks_line(machine) == "fp32 260 (torch), bf16 1631 (torch), int8 1966 (onnxruntime)"
    # An fp32 plan on ONNX Runtime: the fp32 peak is torch's here, not the plan's MLAS rate.
    record = _record(100.0)
    _finish_peaks(record, "coop", first, again, "fp32", "onnxruntime")
    assert record["machine"]["gemm_peak_gflops"] == 260.0 and record["coop"]["1"]["roofline_fraction"] == pytest.approx(100.0 / 260.0)
    assert record["coop"]["1"]["roofline_fraction_plan_engine"] == pytest.approx(100.0 / 250.0)
    # A precision no engine measured (bf16 on a CPU without bf16 units) falls back to the fp32 peak;
    # a GPU plan has no CPU engine to compare with.
    record = _record(100.0)
    _finish_peaks(record, "coop", {**first, "bf16": {}}, {**again, "bf16": {}}, "bf16", None)
    assert record["machine"]["gemm_peak_precision"] == "fp32" and record["machine"]["gemm_peak_gflops"] == 260.0
    assert record["machine"]["gemm_peaks_gflops"]["bf16"] is None and record["machine"]["gemm_peak_engines"]["bf16"] is None
    assert record["coop"]["1"]["roofline_fraction_plan_engine"] is None
    assert peaks_line(record["machine"]) == "fp32 260 (torch), bf16 none, int8 1966 (onnxruntime)"
    # A per-graph plan (encoder ort fp32, decoder openvino bf16, energy gradient openvino int8): its fraction is of the
    # highest peak among its precisions, not of the fp32 one (a record read "99.6 % of fp32" for such a mix).
    record = _record(200.0)
    _finish_peaks(record, "coop", first, again, ("fp32", "bf16", "int8"), {"fp32": "onnxruntime", "bf16": "openvino", "int8": "openvino"})
    assert record["machine"]["gemm_peak_precision"] == "int8" and record["machine"]["gemm_peak_gflops"] == 1966.0
    assert record["coop"]["1"]["roofline_fraction"] == pytest.approx(200.0 / 1966.0)
    assert record["machine"]["plan_engine"] == "openvino" and record["coop"]["1"]["roofline_fraction_plan_engine"] == pytest.approx(200.0 / 310.0)
    assert record["coop"]["1"].get("roofline_fraction_per_graph") is None  # no per-graph FLOPs given: not claimed


def test_per_graph_roofline_weighs_each_graphs_flops_by_its_own_precisions_peak() -> None:
    """The mix's bound: Σ FLOPs_g / peak(precision_g), over the measured time per image; one precision: the same
    number as roofline_fraction; a precision no engine ran falls back to the fp32 peak."""
    from salkit.runtime.bench.record import _finish_peaks

    rates = {"fp32": {"onnxruntime": 200.0}, "bf16": {"torch": 400.0}, "int8": {"torch": 800.0}}
    graphs = {"encoder": 1.0, "latent_decoder": 8.0, "energy_grad": 2.0}  # GFLOP per image
    record = {"machine": {}, "coop": {"1": {"paths": {"split": {"achieved_gflops": 11.0 * 20.0, "images_per_s": 20.0,
                                                                "graph_gflop_per_image": graphs}}}}}
    mix = {"encoder": "fp32", "latent_decoder": "bf16", "energy_grad": "int8"}
    _finish_peaks(record, "coop", rates, rates, ("fp32", "bf16", "int8"), {"fp32": "onnxruntime", "bf16": "openvino",
                                                                            "int8": "openvino"}, mix)
    entry = record["coop"]["1"]
    bound_s = 1.0 / 200.0 + 8.0 / 400.0 + 2.0 / 800.0  # 27.5 ms a photo at the peaks; it took 50 ms
    assert entry["roofline_fraction_per_graph"] == pytest.approx(bound_s * 20.0) == pytest.approx(0.55)
    assert entry["roofline_fraction"] == pytest.approx(220.0 / 800.0)  # the conservative one stays beside it
    one = {"machine": {}, "coop": {"1": {"paths": {"split": {"achieved_gflops": 220.0, "images_per_s": 20.0,
                                                             "graph_gflop_per_image": graphs}}}}}
    _finish_peaks(one, "coop", rates, rates, "bf16", "openvino", dict.fromkeys(graphs, "bf16"))
    assert one["coop"]["1"]["roofline_fraction_per_graph"] == pytest.approx(one["coop"]["1"]["roofline_fraction"])
    no_bf16 = {p: ({} if p == "bf16" else r) for p, r in rates.items()}
    _finish_peaks(one, "coop", no_bf16, no_bf16, ("fp32", "bf16", "int8"), None, mix)
    assert one["coop"]["1"]["roofline_fraction_per_graph"] == pytest.approx((1.0 / 200 + 8.0 / 200 + 2.0 / 800) * 20.0)


def test_torch_peaks_come_through_the_bench_plugin_or_say_not_installed(monkeypatch) -> None:
    """torch's GEMM is measured by the salkit.bench_baselines plug-in in a child process (this
    process never imports it for that); without the plug-in the engine is recorded as not installed."""
    import importlib.metadata

    from salkit.runtime.bench import peaks as bench_peaks
    from salkit.train.bench_torch import torch_baselines, torch_gemm_rates

    assert torch_baselines.gemm_rates is torch_gemm_rates  # the hook the runtime finds on the plug-in
    rates, status = bench_peaks.plugin_gemm_rates("torch", 64, 1, bf16=False)
    assert status == "measured" and rates["fp32"] > 0 and "bf16" not in rates
    assert bench_peaks.plugin_gemm_rates("no-such-engine", 64, 1, bf16=False) == ({}, "not installed")
    # A runtime-only install: no plug-in registered. Nothing is spawned and torch sets no peak.
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setattr(bench_peaks.subprocess, "run", lambda *a, **k: pytest.fail("no child without a plug-in"))
    rates, engines = bench_peaks.engine_peaks(size=64, repeats=1)
    assert engines["torch"] == "not installed" and engines["numpy"] == engines["onnxruntime"] == "measured"
    assert all("torch" not in by_engine for by_engine in rates.values())


def test_the_torch_gemm_rates_per_precision() -> None:
    """bf16 only where asked (the CPU has bf16 units); int8 where this torch build runs _int_mm on a CPU."""
    from salkit.train.bench_torch import torch_gemm_rates

    with_bf16, without = torch_gemm_rates(64, 1, bf16=True), torch_gemm_rates(64, 1, bf16=False)
    assert {"fp32", "bf16"} <= set(with_bf16) <= {"fp32", "bf16", "int8"} and "bf16" not in without
    assert all(rate > 0 for rate in (*with_bf16.values(), *without.values()))


def test_bench_compares_plans_interleaved(toy_coop, tmp_path) -> None:
    pytest.importorskip("openvino")
    out = tmp_path / "plans.json"
    result = _bench("--engine", toy_coop.path, "--batch", "2", "--repeat", "2", "--threads", "1", "--backend", "ort-cpu",
                    "--precision", "fp32", "--compare-plans", "openvino:fp32", "--json", out)
    assert result.exit_code == 0, result.output
    plans = json.loads(out.read_text())["plans"]
    assert set(plans) == {"ort-cpu:fp32", "openvino:fp32"} and plans["openvino:fp32"]["2"]["relative_to"] == "ort-cpu:fp32"
    first, other = plans["ort-cpu:fp32"]["2"], plans["openvino:fp32"]["2"]
    assert first["relative_speed"] == 1.0 and first["max_abs_vs_first"] == 0.0
    assert other["max_abs_vs_first"] <= 1e-5 and other["relative_speed"] > 0
    assert set(other["graphs_p50_ms"]) == {"encoder", "latent_decoder", "energy_grad"}
    assert "plan openvino:fp32 batch 2" in result.output


def test_a_plan_the_gate_rejected_is_still_compared_and_says_so(toy_coop, tmp_path) -> None:
    pytest.importorskip("openvino")
    from tests.runtime.toy_precision import rejected, with_precision_records

    bundle = with_precision_records(toy_coop.path, tmp_path / "b", gate={"openvino:fp32": rejected("saliency max |Δ| 0.102 > 0.05")})
    out = tmp_path / "plans.json"
    result = _bench("--engine", bundle, "--batch", "1", "--repeat", "1", "--threads", "1", "--backend", "ort-cpu",
                    "--precision", "fp32", "--compare-plans", "openvino:fp32", "--json", out)
    assert result.exit_code == 0, result.output
    plans = json.loads(out.read_text())["plans"]
    assert plans["openvino:fp32"]["1"]["gate_rejected"] == "saliency max |Δ| 0.102 > 0.05"
    assert "gate_rejected" not in plans["ort-cpu:fp32"]["1"] and plans["openvino:fp32"]["1"]["images_per_s"] > 0
