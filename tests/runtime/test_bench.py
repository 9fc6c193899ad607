"""``sal-runtime bench`` on the toy bundles: the JSON record's keys and its internal arithmetic,
FLOP counting against torch's own layer shapes, the fp32 comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from salkit.runtime.bench_flops import _matmul_session, gemm_peak_gflops, gemm_rates, graph_flops
from salkit.runtime.cli import main
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


def test_gemm_peak_is_the_best_kernel_and_the_onnxruntime_kernel_multiplies() -> None:
    rates = gemm_rates(size=256, repeats=2)
    assert set(rates) == {"numpy", "onnxruntime"} and all(0.1 < r < 1e5 for r in rates.values())
    assert gemm_peak_gflops(size=256, repeats=2) > 0.5 * max(rates.values())  # a best-of, not a mean
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
    assert record["backend"] == "ort-cpu" and record["machine"]["gemm_peak_gflops"] > 0
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
    assert "img/s" in result.output


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
    result = _bench("--engine", toy_qefpn.path, "--batch", "1,x")
    assert result.exit_code == 2 and "--batch" in result.output
    assert np.isfinite(entry["images_per_s"])
