"""``sal-runtime bench`` on the toy bundles: the JSON record's keys and its internal arithmetic,
FLOP counting against torch's own layer shapes, the fp32 comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from salkit.runtime.bench_flops import _matmul_session, gemm_rates, graph_flops
from salkit.runtime.cli import main
from salkit.runtime.predictor import Predictor
from tests.runtime.toy_bundles import LATENT, SIZE, ToyCoop, build_coop_bundle
from tests.runtime.toy_fixtures import toy_coop, toy_qefpn  # noqa: F401

KEYS = {"images_per_s", "p50_ms", "p99_ms", "torch_images_per_s", "speedup_vs_torch", "roofline_fraction",
        "speedup_vs_fp32", "mae_delta", "gflop_per_image", "paths"}


def torch_flops(module: nn.Module, *args: torch.Tensor) -> int:
    """Dense FLOPs of one forward, from torch's layers and the shapes they actually see."""
    total = 0

    def hook(layer, inputs, output):  # type: ignore[no-untyped-def]
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


def test_graph_flops_match_torch_layer_count(toy_coop) -> None:  # type: ignore[no-untyped-def]
    model = toy_coop.model
    x = torch.zeros(1, 3, SIZE, SIZE)
    assert graph_flops(toy_coop.path / "encoder.onnx") == torch_flops(model.encoder, x)
    assert graph_flops(toy_coop.path / "generator.onnx") == torch_flops(model.generator, x, torch.zeros(1, LATENT))
    assert graph_flops(toy_coop.path / "encoder.onnx") > 0


def test_gemm_peak_is_the_best_kernel_and_the_onnxruntime_kernel_multiplies(monkeypatch) -> None:
    from salkit.runtime import bench_flops

    rates = gemm_rates(size=256, repeats=2)
    assert set(rates) == {"numpy", "onnxruntime"} and all(0.1 < r < 1e5 for r in rates.values())
    # The peak is the best kernel's rate (two timings of a shared machine are not compared here).
    monkeypatch.setattr(bench_flops, "gemm_rates", lambda size, repeats: {"numpy": 3.0, "onnxruntime": 7.0})
    assert bench_flops.gemm_peak_gflops(size=256, repeats=2) == 7.0
    a, b = np.random.default_rng(0).standard_normal((2, 64, 64), dtype=np.float32)
    (product,) = _matmul_session(64).run(None, {"a": a, "b": b})  # the timed graph is a real GEMM
    np.testing.assert_allclose(product, a @ b, rtol=1e-4, atol=1e-4)


def _bench(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["bench", "--gemm-size", "256", *map(str, args)], catch_exceptions=False)


def test_bench_record_coop(toy_coop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench.json"
    result = _bench("--engine", toy_coop.path, "--batch", "1,2", "--repeat", "3", "--threads", "1", "--json", out)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["plan"] in ("ort-cpu:fp32", "openvino:fp32") and record["plan"] == f"{record['backend']}:{record['precision']}"
    peaks = record["machine"]["gemm_peaks_gflops"]
    assert record["machine"]["gemm_peak_gflops"] == peaks["fp32"] == max(record["machine"]["gemm_rates_gflops"]["fp32"].values()) > 0
    assert record["machine"]["gemm_peak_precision"] == "fp32" and record["machine"]["cpu"]["model"]
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
        assert entry["roofline_fraction"] == pytest.approx(
            split["gflop_per_image"] * int(batch) / (split["p50_ms"] / 1e3) / record["machine"]["gemm_peak_gflops"]
        )
        assert entry["torch_images_per_s"] is None and entry["mae_delta"] is None  # not asked for: null, not made up
        assert entry["torch_best_recipe_images_per_s"] is None and entry["speedup_vs_torch_best"] is None
        _check_breakdown(entry, {"encoder": 1, "latent_decoder": 1, "energy_grad": k})
    assert "img/s" in result.output and "host" in result.output


def _check_breakdown(entry: dict, calls: dict[str, int]) -> None:
    """The split predict's graph time is Σ calls × each graph's p50; the host time is the rest."""
    parts = entry["breakdown"]
    assert parts["graph_calls"] == calls and set(parts["graphs_p50_ms"]) == set(calls)
    assert all(ms > 0 for ms in parts["graphs_p50_ms"].values())
    assert parts["graphs_ms"] == pytest.approx(sum(calls[g] * ms for g, ms in parts["graphs_p50_ms"].items()))
    assert parts["host_ms"] == pytest.approx(entry["p50_ms"] - parts["graphs_ms"])
    assert parts["host_fraction"] == pytest.approx(parts["host_ms"] / entry["p50_ms"])


@pytest.mark.parametrize("toy", ["toy_coop", "toy_qefpn"])
def test_graph_runs_count_the_runs_a_predict_makes(toy, request) -> None:  # type: ignore[no-untyped-def]
    bundle = request.getfixturevalue(toy)
    with Predictor.from_bundle(bundle.path, backend="ort-cpu", threads=1) as predictor:
        kind = predictor.runtime_kind
        samples, steps = kind.defaults(predictor.manifest, None, None)
        runs = kind.graph_runs(samples, steps)["split"]
        counted = dict.fromkeys(runs, 0)
        for name in runs:  # each loop keeps its runners under the graphs' names
            runner = getattr(predictor.loop.runners, name)

            def counting(binding, name=name, run=runner.run):  # type: ignore[no-untyped-def]
                counted[name] += 1
                return run(binding)

            runner.run = counting
        predictor.predict_tensor(np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert counted == {name: run.calls for name, run in runs.items()} and steps > 1


def test_bench_against_an_fp32_bundle(toy_coop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other"
    build_coop_bundle(other, ToyCoop(seed=1))
    out = tmp_path / "b.json"
    assert _bench("--engine", toy_coop.path, "--fp32", toy_coop.path, "--batch", "2", "--repeat", "2", "--json", out).exit_code == 0
    same = json.loads(out.read_text())["coop"]["2"]
    assert same["mae_delta"] == 0.0 and same["speedup_vs_fp32"] > 0
    assert _bench("--engine", toy_coop.path, "--fp32", other, "--batch", "2", "--repeat", "2", "--json", out).exit_code == 0
    assert json.loads(out.read_text())["coop"]["2"]["mae_delta"] > 1e-3


def test_bench_qefpn_and_bad_options(toy_qefpn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "q.json"
    assert _bench("--engine", toy_qefpn.path, "--batch", "2", "--repeat", "2", "--json", out).exit_code == 0
    entry = json.loads(out.read_text())["qefpn"]["2"]
    t = toy_qefpn.manifest.qefpn["broyden_iterations"]
    expected = graph_flops(toy_qefpn.path / "encoder.onnx") + (t + 1) * graph_flops(toy_qefpn.path / "f.onnx") + graph_flops(toy_qefpn.path / "decoder.onnx")
    assert entry["gflop_per_image"] * 1e9 == pytest.approx(expected)
    _check_breakdown(entry, {"encoder": 1, "f": t + 1, "decoder": 1})
    result = _bench("--engine", toy_qefpn.path, "--batch", "1,x")
    assert result.exit_code == 2 and "--batch" in result.output
    assert np.isfinite(entry["images_per_s"])


def test_int8_and_openvino_peak_graphs_multiply() -> None:
    """The int8 peak times a real u8 × s8 product (and the OpenVINO QDQ graph a real float one)."""
    import onnxruntime as ort

    from salkit.runtime.bench_peaks import _matmul_model, gemm_peaks

    rng = np.random.default_rng(0)
    # Activations below 128: on AVX2 without VNNI, MLAS sums u8·s8 pairs in int16 and saturates with
    # full-range u8 (measured here: errors up to 46005 of 303377); the peak's timing does not care.
    a, b = rng.integers(0, 128, (64, 64), dtype=np.uint8), rng.integers(-128, 128, (64, 64), dtype=np.int8)
    (product,) = ort.InferenceSession(_matmul_model(64, "integer"), providers=["CPUExecutionProvider"]).run(None, {"a": a, "b": b})
    assert np.array_equal(product, a.astype(np.int32) @ b.astype(np.int32))
    peaks = gemm_peaks(size=128, repeats=1)
    assert peaks["int8"]["onnxruntime"] > 0 and peaks["fp32"]["onnxruntime"] > 0
    assert set(peaks) == {"fp32", "bf16", "int8"}


def test_bench_compares_plans_interleaved(toy_coop, tmp_path) -> None:  # type: ignore[no-untyped-def]
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
