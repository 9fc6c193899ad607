"""Per-graph plans at load time: a recorded mix runs graph by graph, is re-checked on the CPU at
hand (falling back with a one-line reason), and its bad input is a one-line error naming the graph.

Every verdict here is fixed by ``simulated_cpu`` (tests/fixtures/cpus.py), never by the CPU that runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.runtime import plan as plan_module
from salkit.runtime.backends import availability
from salkit.runtime.bundle import MANIFEST_NAME, load_bundle
from salkit.runtime.cli.main import main
from salkit.runtime.plan import choose_plan
from salkit.runtime.predictor import Predictor
from tests.runtime.toy_bundles import SIZE
from tests.runtime.toy_precision import passed, quantize_int8, with_precision_records

# The gate's thresholds (salkit.export.precision.gate): the runtime tests do not import export.
SALIENCY_MEAN_ABS, SALIENCY_MAX_ABS = 0.003, 0.05
MIX = {"encoder": "ort-cpu:int8", "latent_decoder": "openvino:fp32", "energy_grad": "ort-cpu:fp32"}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SALKIT_CPU_DISABLE", raising=False)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE), dtype=np.float32)


@pytest.fixture(scope="module")
def int8_encoder(toy_coop, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("mix") / "encoder.int8.onnx"
    quantize_int8(toy_coop.path / "encoder.onnx", target, [{"image": _images(4, seed=100 + i)} for i in range(4)])
    return target


def _mixed_bundle(toy_coop, int8_encoder: Path, out: Path, mix: dict[str, str] | None = MIX) -> Path:
    path = with_precision_records(toy_coop.path, out, variant_files={"int8": {"encoder": int8_encoder}},
                                  gate={"ort-cpu:int8": passed()}, choice="ort-cpu:int8")
    if mix is not None:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
        manifest["precision_choice"].update(graphs=mix, mix_seconds=0.01)
        (path / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


class Probe:
    """A stand-in probe for auto's single-plan fallback: ort-cpu:fp32 is the fast one."""

    def __call__(self, manifest, backend, precision, threads) -> float:
        return 1e-6 if (backend, precision) == ("ort-cpu", "fp32") else 1.0


def test_a_mixed_plan_runs_graph_by_graph_within_the_gate_of_fp32(toy_coop, int8_encoder, tmp_path, simulated_cpu) -> None:
    simulated_cpu("avx512")
    path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / "mixed")
    x = _images(3, seed=7)
    with Predictor.from_bundle(path, threads=1, probe=Probe()) as mixed, \
            Predictor.from_bundle(toy_coop.path, backend="ort-cpu", precision="fp32", threads=1) as ref:
        assert mixed.graph_plans == MIX
        assert mixed.plan_line.startswith("plan per graph (encoder ort-cpu:int8, latent_decoder openvino:fp32, energy_grad "
                                          "ort-cpu:fp32): auto chose the bundle's per-graph plan")
        got, want = mixed.predict_tensor(x, seed=0), ref.predict_tensor(x, seed=0)
        runners = {name: (r.backend, r.path.name) for name, r in mixed._runners.items()}
        # Two engines on the same cores: ONNX Runtime's threads sleep after each run instead of spinning
        # (spinning, they took the cores from OpenVINO's next graph); alone on the cores they keep spinning.
        spin_key = "session.intra_op.allow_spinning"
        assert {name: r.session.get_session_options().get_session_config_entry(spin_key)
                for name, r in mixed._runners.items() if r.backend == "ort-cpu"} == {"encoder": "0", "energy_grad": "0"}
        assert all(r.spin for r in ref._runners.values())
        for runner in ref._runners.values():  # ONNX Runtime's default (spinning) is left alone: no entry set
            with pytest.raises(RuntimeError, match="does not have configuration"):
                runner.session.get_session_options().get_session_config_entry(spin_key)
    assert runners == {"encoder": ("ort-cpu", "encoder.int8.onnx"), "latent_decoder": ("openvino", "latent_decoder.onnx"),
                       "energy_grad": ("ort-cpu", "energy_grad.onnx")}
    delta = np.abs(got["saliency"] - want["saliency"])
    assert 0 < delta.max() <= SALIENCY_MAX_ABS and delta.mean() <= SALIENCY_MEAN_ABS  # the int8 encoder did run


def test_a_bundle_without_a_mix_loads_as_before(toy_coop, int8_encoder, tmp_path, simulated_cpu) -> None:
    simulated_cpu("avx512")
    path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / "single", mix=None)
    plan = choose_plan(load_bundle(path), threads=1, probe=Probe())
    assert not plan.mixed and plan.graphs == {} and plan.line == f"plan {plan.name}: {plan.reason}"
    assert "per-graph" not in plan.reason
    with pytest.raises(SalkitError, match=r"records no per-graph plan \(--precision mix\)"):
        choose_plan(load_bundle(path), precision="mix")


@pytest.mark.parametrize("cpu, off, graph, want", [
    ("avx512", "int8", "encoder", "int8 needs AVX2, AVX-VNNI, AVX512-VNNI or AMX-INT8"),  # a capability forced off
    ("none", None, "encoder", "int8 needs AVX2"),  # a CPU without it
    ("avx512", None, "latent_decoder", "bf16 needs AMX-BF16 or AVX512-BF16"),  # exported where bf16 exists
])
def test_auto_rechecks_the_mix_and_falls_back_with_a_reason(toy_coop, int8_encoder, tmp_path, simulated_cpu, monkeypatch,
                                                            cpu, off, graph, want) -> None:
    simulated_cpu(cpu)
    if off:
        monkeypatch.setenv("SALKIT_CPU_DISABLE", off)
    mix = {**MIX, "latent_decoder": "openvino:bf16"} if graph == "latent_decoder" else MIX
    path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / "mixed", mix)
    with Predictor.from_bundle(path, threads=1, probe=Probe()) as predictor:
        assert predictor.graph_plans == {} and predictor.plan == "ort-cpu:fp32"
        line = predictor.plan_line
        predictor.predict_tensor(_images(1, seed=1), seed=0)
    assert "\n" not in line and f"the bundle's per-graph plan is not used here: graph {graph} on {mix[graph]}: {want}" in line
    if off:
        assert "forced off by SALKIT_CPU_DISABLE" in line


def test_a_forced_mix_runs_a_graph_this_cpu_lacks_the_precision_of_at_fp32(toy_coop, int8_encoder, tmp_path, simulated_cpu,
                                                                          monkeypatch) -> None:
    simulated_cpu("avx512")
    monkeypatch.setenv("SALKIT_CPU_DISABLE", "int8")
    path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / "mixed")
    plan = choose_plan(load_bundle(path), precision="mix")
    assert plan.graphs == {**MIX, "encoder": "ort-cpu:fp32"}
    assert plan.reason.startswith("requested (the bundle's per-graph plan); graph encoder on ort-cpu:int8: int8 needs")
    assert plan.reason.endswith("runs ort-cpu:fp32 instead")


def _predict(bundle: Path, tmp_path: Path, *args: str):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(images / "a.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", "--engine", str(bundle), "--input", str(images), "--out", str(out),
                                       "--threads", "1", *args], catch_exceptions=False)
    return result, out


def test_a_forced_mix_naming_an_engine_not_installed_is_a_one_line_error(toy_coop, int8_encoder, tmp_path, simulated_cpu,
                                                                         monkeypatch) -> None:
    simulated_cpu("avx512")
    path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / "mixed")
    missing = {**availability(), "openvino": "the openvino package is not installed (pip install 'salkit[openvino]')"}
    monkeypatch.setattr(plan_module, "availability", lambda manifest=None: missing)
    result, out = _predict(path, tmp_path, "--precision", "mix")
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "graph latent_decoder on openvino:fp32: the openvino package is not installed" in line
    assert not out.exists()
    # auto is not forced: it falls back and says why
    plan = choose_plan(load_bundle(path), threads=1, probe=Probe())
    assert not plan.mixed and "graph latent_decoder on openvino:fp32: the openvino package is not installed" in plan.reason


@pytest.mark.parametrize("precision", ["auto", "mix"])
def test_a_missing_graph_file_of_the_mix_is_a_one_line_error(toy_coop, int8_encoder, tmp_path, simulated_cpu,
                                                             precision) -> None:
    simulated_cpu("avx512")
    path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / "mixed")
    manifest = load_bundle(path)
    (path / "encoder.int8.onnx").unlink()
    with pytest.raises(SalkitError, match=r"graph encoder on ort-cpu:int8: its graph file encoder.int8.onnx is missing"):
        choose_plan(manifest, precision=precision, threads=1, probe=Probe())
    result, out = _predict(path, tmp_path, "--precision", precision)
    assert result.exit_code == 2 and "graph 'encoder'" in result.output and "encoder.int8.onnx is missing" in result.output
    assert not out.exists()


def test_a_mix_that_names_an_unknown_graph_or_a_gpu_backend_is_refused(toy_coop, int8_encoder, tmp_path) -> None:
    for mix, words in (({**MIX, "nope": "ort-cpu:fp32"}, "names graph 'nope'"),
                       ({**MIX, "encoder": "ort-cuda:fp32"}, "graph encoder runs on ort-cuda:fp32")):
        path = _mixed_bundle(toy_coop, int8_encoder, tmp_path / f"bad{len(words)}", mix)
        with pytest.raises(SalkitError, match=words):
            choose_plan(load_bundle(path), threads=1, probe=Probe())

