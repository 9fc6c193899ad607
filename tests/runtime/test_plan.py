"""Choosing (backend, precision): the gate is obeyed, the CPU's capabilities are checked, choices are cached.

Every test whose verdict depends on the CPU fixes it with ``simulated_cpu`` (tests/fixtures/cpus.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from salkit.base.errors import SalkitError
from salkit.runtime.bundle import MANIFEST_NAME, load_bundle
from salkit.runtime.cpu import cpu_info
from salkit.runtime.plan import cache_path, choose_plan
from salkit.runtime.predictor import Predictor
from tests.runtime.toy_bundles import LATENT, SIZE, ToyCoop, build_coop_bundle
from tests.runtime.toy_precision import passed, rejected, with_precision_records


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SALKIT_CPU_DISABLE", raising=False)


class StandIn:
    """A probe that says which plan is fast: the stand-in for a fast-but-wrong low-precision path."""

    def __init__(self, fast: str) -> None:
        self.fast, self.calls = fast, []

    def __call__(self, manifest, backend, precision, threads) -> float:
        self.calls.append(f"{backend}:{precision}")
        return 1e-6 if f"{backend}:{precision}" == self.fast else 1.0


@pytest.fixture(scope="module")
def wrong_decoder(tmp_path_factory) -> Path:
    """A latent_decoder with other weights: same I/O, wrong maps (what a broken int8 graph looks like)."""
    other = tmp_path_factory.mktemp("wrong") / "coop"
    build_coop_bundle(other, ToyCoop(seed=7).eval())
    return other / "latent_decoder.onnx"


def _bundle(toy_coop, tmp_path, wrong_decoder, gate, choice=None) -> Path:
    return with_precision_records(toy_coop.path, tmp_path / "bundle", variant_files={"int8": {"latent_decoder": wrong_decoder}},
                                  gate=gate, choice=choice)


def test_auto_never_picks_a_plan_the_gate_rejected(toy_coop, tmp_path, wrong_decoder, simulated_cpu) -> None:
    simulated_cpu("avx512")  # int8 native: only the gate keeps it out
    path = _bundle(toy_coop, tmp_path, wrong_decoder, {"ort-cpu:int8": rejected(), "openvino:int8": rejected()})
    probe = StandIn("ort-cpu:int8")
    with Predictor.from_bundle(path, threads=1, probe=probe) as predictor:
        assert predictor.precision == "fp32"
        assert not any(c.endswith(":int8") for c in probe.calls)  # never even measured
        assert "the precision gate rejected ort-cpu:int8: saliency max |Δ| 0.31" in predictor.backend_reason
        x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)
        latents = np.random.default_rng(1).standard_normal((2, 1, LATENT), dtype=np.float32)
        with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", precision="fp32", threads=1) as ref:
            want = ref.predict_tensor(x, latents=latents)["saliency"]
        assert np.abs(predictor.predict_tensor(x, latents=latents)["saliency"] - want).max() <= 1e-5


def test_the_same_stand_in_is_picked_once_the_gate_passes_it(toy_coop, tmp_path, wrong_decoder, simulated_cpu) -> None:
    simulated_cpu("avx2")
    path = _bundle(toy_coop, tmp_path, wrong_decoder, {"ort-cpu:int8": passed(saliency_max=0.001)})
    probe = StandIn("ort-cpu:int8")
    plan = choose_plan(load_bundle(path), threads=1, probe=probe)
    assert (plan.backend, plan.precision) == ("ort-cpu", "int8")
    assert "ort-cpu:int8" in probe.calls and "openvino:int8" not in probe.calls  # openvino:int8 was not judged


def test_a_cached_choice_is_reused_only_while_it_is_still_allowed(toy_coop, tmp_path, wrong_decoder, simulated_cpu) -> None:
    path = _bundle(toy_coop, tmp_path, wrong_decoder, {"openvino:bf16": passed()})
    manifest = load_bundle(path)
    amx = simulated_cpu("amx")
    amx_off = cpu_info("bf16")
    first = choose_plan(manifest, threads=1, probe=StandIn("openvino:bf16"), cpu=amx)
    assert first.name == "openvino:bf16" and "probe:" in first.reason
    again = StandIn("ort-cpu:fp32")
    assert choose_plan(manifest, threads=1, probe=again, cpu=amx).name == "openvino:bf16" and again.calls == []
    stored = json.loads(cache_path().read_text())["plans"]
    assert [entry["choice"] for entry in stored.values()] == ["openvino:bf16"]
    # The same CPU model with bf16 forced off: the cached bf16 choice is not a candidate any more.
    fallback = choose_plan(manifest, threads=1, probe=StandIn("openvino:bf16"), cpu=amx_off)
    assert fallback.precision == "fp32" and "forced off" in fallback.reason


def test_bf16_forced_off_runs_a_bf16_bundle_correctly(toy_coop, tmp_path, wrong_decoder, simulated_cpu, monkeypatch) -> None:
    """A bundle exported where bf16 exists (its gate passed and chose openvino:bf16), run where it does not."""
    path = _bundle(toy_coop, tmp_path, wrong_decoder, {"openvino:bf16": passed()}, choice="openvino:bf16")
    simulated_cpu("amx")
    assert "openvino:bf16" in StandIn_calls(path)  # with bf16 units it is a candidate
    monkeypatch.setenv("SALKIT_CPU_DISABLE", "bf16")
    with Predictor.from_bundle(path, threads=1, probe=StandIn("openvino:bf16")) as predictor:
        assert predictor.precision == "fp32"
        assert "the bundle's recorded choice openvino:bf16 is not used here: bf16 needs AMX-BF16 or AVX512-BF16" in predictor.backend_reason
        x = np.random.default_rng(2).standard_normal((2, 3, SIZE, SIZE), dtype=np.float32)
        got = predictor.predict_tensor(x, seed=3)["saliency"]
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", precision="fp32", threads=1) as ref:
        assert np.abs(got - ref.predict_tensor(x, seed=3)["saliency"]).max() <= 1e-5
    # Forced, it runs at fp32 and says why; a caller that must run exactly that plan gets the error.
    with Predictor.from_bundle(path, backend="openvino", precision="bf16", threads=1) as forced:
        assert forced.plan == "openvino:fp32"
        assert re.search(r"openvino:bf16 was requested, but this CPU cannot run it: bf16 needs .*forced off by "
                         r"SALKIT_CPU_DISABLE\); runs openvino:fp32 instead$", forced.backend_reason), forced.backend_reason
    with pytest.raises(SalkitError, match=r"openvino:bf16 cannot run .*bf16 needs .*forced off by SALKIT_CPU_DISABLE"):
        Predictor.from_bundle(path, backend="openvino", precision="bf16", threads=1, fallback=False)


def StandIn_calls(path: Path) -> list[str]:
    probe = StandIn("none")
    choose_plan(load_bundle(path), threads=1, probe=probe)
    return probe.calls


def test_named_plans_are_checked(toy_coop, tmp_path, wrong_decoder, simulated_cpu) -> None:
    path = _bundle(toy_coop, tmp_path, wrong_decoder, {"ort-cpu:int8": rejected("entropy mean |Δ| 0.02 > 0.01")})
    zen3 = simulated_cpu("avx2")
    manifest = load_bundle(path)
    with pytest.raises(SalkitError, match=r"ort-cpu:int8 .*precision gate rejected ort-cpu:int8: entropy mean"):
        choose_plan(manifest, "ort-cpu", "int8", cpu=zen3)
    with pytest.raises(SalkitError, match=r"backend ort-cpu has no bf16 path"):
        choose_plan(manifest, "ort-cpu", "bf16", cpu=zen3)
    with pytest.raises(SalkitError, match=r"bf16 needs AMX-BF16 or AVX512-BF16, which this CPU \(simulated AMD EPYC 7B13"):
        choose_plan(manifest, "openvino", "bf16", cpu=zen3, fallback=False)
    instead = choose_plan(manifest, "openvino", "bf16", cpu=zen3)  # only the CPU is in the way: fp32 runs
    assert instead.name == "openvino:fp32" and instead.reason.startswith("openvino:bf16 was requested, but this CPU cannot")
    by_precision = choose_plan(manifest, "auto", "bf16", cpu=zen3, probe=StandIn("ort-cpu:fp32"))
    assert by_precision.name == "ort-cpu:fp32" and by_precision.reason.startswith("precision bf16 was requested")
    with pytest.raises(SalkitError, match=r"no int8 graphs"):
        choose_plan(load_bundle(toy_coop.path), "openvino", "int8", cpu=zen3)
    # The gate itself computes the maps of a plan it is judging: check_gate=False runs it.
    assert choose_plan(manifest, "ort-cpu", "int8", cpu=zen3, check_gate=False).name == "ort-cpu:int8"
    assert choose_plan(manifest, "ort-cpu", "fp32", cpu=zen3).name == "ort-cpu:fp32"


def test_cpu_flags_are_read_and_can_be_forced_off(simulated_cpu, monkeypatch) -> None:
    amx = simulated_cpu("amx")
    assert amx.model == "simulated Intel Xeon Platinum 8480+ (AMX)" and amx.bf16 and amx.int8_vnni
    assert {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f"} <= amx.flags
    off = cpu_info("bf16,avx512_vnni")
    assert not off.bf16 and off.int8_vnni and "avx512_vnni" not in off.flags
    monkeypatch.setenv("SALKIT_CPU_DISABLE", "amx")
    assert cpu_info().flags == amx.flags - {"amx_bf16", "amx_int8"} and cpu_info().bf16  # AVX512-BF16 is left
    zen3 = simulated_cpu("avx2")
    assert not zen3.bf16 and not zen3.int8_vnni and zen3.int8 and zen3.supports("fp32")
    assert "AMD EPYC 7B13" in zen3.lacks("bf16")
    bare = simulated_cpu("none")
    assert not bare.int8 and "int8 needs AVX2" in bare.lacks("int8")
    with pytest.raises(SalkitError, match=r"^SALKIT_CPU_DISABLE=bf61: unknown capability 'bf61'; known names: bf16, .*amx_bf16"):
        cpu_info("bf61")
    monkeypatch.setenv("SALKIT_CPUINFO", "/nonexistent/cpuinfo")
    with pytest.raises(SalkitError, match="SALKIT_CPUINFO=/nonexistent/cpuinfo: cannot read it"):
        cpu_info()


def test_cli_says_in_one_line_which_plan_runs_instead_of_one_the_cpu_lacks(toy_coop, tmp_path) -> None:
    pytest.importorskip("openvino")
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    exe = Path(sys.executable).with_name("sal-runtime")
    env = {"PATH": str(exe.parent), "SALKIT_CPU_DISABLE": "bf16", "XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    result = subprocess.run([str(exe), "predict", "--engine", str(toy_coop.path), "--input", str(image), "--out", str(tmp_path / "out"),
                             "--backend", "openvino", "--precision", "bf16"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "bf16" in line]
    assert len(lines) == 1 and "forced off" in lines[0] and lines[0].endswith("runs openvino:fp32 instead"), result.stderr
    assert lines[0].startswith("coop bundle ") and ", plan openvino:fp32: openvino:bf16 was requested" in lines[0]
    assert (tmp_path / "out" / "in.png").is_file()


def test_an_unknown_capability_to_disable_is_a_one_line_error(toy_coop, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from salkit.runtime.cli.main import main

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "in.png")
    monkeypatch.setenv("SALKIT_CPU_DISABLE", "bf16,avx512bf16")
    for command in (["predict", "--input", str(tmp_path / "in.png"), "--out", str(tmp_path / "out")], ["serve"]):
        result = CliRunner().invoke(main, [*command, "--engine", str(toy_coop.path)])  # serve: refused before it listens
        output = result.stderr if hasattr(result, "stderr") else result.output
        assert result.exit_code == 2, output
        assert output.strip().splitlines() == [
            "error: SALKIT_CPU_DISABLE=bf16,avx512bf16: unknown capability 'avx512bf16'; known names: bf16, int8_vnni, int8, "
            "amx, avx512 or the flags amx_bf16, amx_int8, avx512_bf16, avx512_vnni, avx_vnni, avx512f, avx2"]


def test_an_unwritable_cache_only_costs_a_new_probe(toy_coop, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    probe = StandIn("openvino:fp32")
    plan = choose_plan(load_bundle(toy_coop.path), threads=1, probe=probe)
    if len(probe.calls) > 1:  # openvino installed: two fp32 candidates were measured
        assert plan.name == "openvino:fp32"
    assert (Path(toy_coop.path) / MANIFEST_NAME).is_file()


def test_a_plan_that_fails_in_the_probe_is_passed_over(toy_coop) -> None:
    pytest.importorskip("openvino")  # two CPU backends, so the probe runs
    def probe(manifest, backend, precision, threads):
        if backend == "openvino":
            raise SalkitError("graph 'encoder': OpenVINO cannot compile encoder.onnx")
        return 1.0

    plan = choose_plan(load_bundle(toy_coop.path), "auto", "fp32", threads=1, probe=probe)
    assert plan.name == "ort-cpu:fp32" and "openvino:fp32 failed: graph 'encoder'" in plan.reason
    assert not cache_path().exists()  # not cached: the next start measures again


def test_an_fp32_plan_the_gate_rejected_is_not_a_candidate(toy_coop, tmp_path, wrong_decoder, simulated_cpu) -> None:
    """Another engine's float32 is judged like a reduced plan (a fixed-point solve can amplify engine differences);
    the reference ort-cpu:fp32 stays allowed whatever a record says, and a bundle whose gate never judged
    openvino:fp32 keeps it as a candidate."""
    pytest.importorskip("openvino")
    simulated_cpu("avx512")
    judged = load_bundle(_bundle(toy_coop, tmp_path, wrong_decoder, {"openvino:fp32": rejected(), "ort-cpu:fp32": rejected()}))
    probe = StandIn("openvino:fp32")
    plan = choose_plan(judged, threads=1, probe=probe)
    assert plan.name == "ort-cpu:fp32" and "openvino:fp32" not in probe.calls
    assert "openvino:fp32 (the precision gate rejected openvino:fp32: saliency max |Δ| 0.31" in plan.reason, plan.reason
    with pytest.raises(SalkitError, match=r"plan openvino:fp32 cannot run bundle .*: the precision gate rejected openvino:fp32"):
        choose_plan(judged, "openvino", "fp32", threads=1)
    assert choose_plan(judged, "openvino", "fp32", threads=1, check_gate=False).name == "openvino:fp32"
    unjudged = load_bundle(with_precision_records(toy_coop.path, tmp_path / "old", gate={}))
    probe = StandIn("openvino:fp32")
    assert choose_plan(unjudged, threads=1, probe=probe).name == "openvino:fp32" and "openvino:fp32" in probe.calls
