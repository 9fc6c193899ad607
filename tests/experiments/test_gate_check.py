"""experiments.gate_check: the plan the runtime runs for a bundle (auto, as bench and predict resolve it; a
per-graph plan as that mix) judged by the export gate on another split's photographs (the test split
export never saw). Capabilities are simulated and probes stood in, so the plan does not depend on the CPU."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from experiments import gate_check
from salkit.base.errors import SalkitError
from tests.export.test_precision_gate import _corrupted_copy


def _root(tmp_path: Path, synthetic_dataset: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset / "img", root / "img")
    stems = sorted(p.stem for p in (root / "img").iterdir())
    (root / "train.txt").write_text("\n".join(stems[:8]) + "\n")
    (root / "test.txt").write_text("\n".join(stems[8:]) + "\n")
    return root, stems[8:]


def _x(bundle: Path, root: Path, ids: list[str]) -> np.ndarray:
    from salkit.base.images import decode_image, preprocess
    from salkit.runtime.bundle import load_bundle

    m = load_bundle(bundle)
    return preprocess([decode_image(root / "img" / f"{i}.jpg") for i in ids], m.input_size, m.mean, m.std)


def _reduced(source: Path, out: Path, corrupt: bool, choice: dict, gate: dict | None = None) -> Path:
    """A copy of ``source`` with int8 artefacts (the encoder's an exact copy, latent_decoder's scrambled when
    ``corrupt``) and ``choice`` recorded over an fp32 single plan, as export records a per-graph plan."""
    from salkit.runtime.bundle import sha256_file

    shutil.copytree(source, out)
    shutil.copyfile(out / "encoder.onnx", out / "encoder.int8.onnx")
    if corrupt:
        _corrupted_copy(out / "latent_decoder.onnx", out / "latent_decoder.int8.onnx", 1.6, noise=1.0)
    else:
        shutil.copyfile(out / "latent_decoder.onnx", out / "latent_decoder.int8.onnx")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["variants"] = {"int8": {g: {"file": f"{g}.int8.onnx", "sha256": sha256_file(out / f"{g}.int8.onnx")}
                                     for g in ("encoder", "latent_decoder")}}
    manifest["precision_choice"] = {"plan": "ort-cpu:fp32", "cpu": "test", "reason": "test", "int8_vnni": True, **choice}
    manifest["precision_gate"] = gate or {}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _delta_max(bundle: Path, x: np.ndarray) -> float:
    """The runtime's own auto run against ort-cpu float32, outside the gate's code."""
    from salkit.runtime.predictor import Predictor

    with Predictor.from_bundle(bundle, backend="ort-cpu", precision="fp32") as ref, Predictor.from_bundle(bundle) as auto:
        return float(np.abs(auto.predict_tensor(x, seed=0)["saliency"] - ref.predict_tensor(x, seed=0)["saliency"]).max())


MIX = {"encoder": "ort-cpu:int8", "latent_decoder": "ort-cpu:int8", "energy_grad": "ort-cpu:fp32"}


def test_the_per_graph_plan_auto_runs_is_judged_as_that_mix_and_a_corrupted_graph_is_named(
        tmp_path: Path, strong_coop_bundle: Path, synthetic_dataset: Path, simulated_cpu) -> None:
    simulated_cpu("avx512")  # int8 native, so auto takes the recorded mix whatever CPU runs the test
    root, test_ids = _root(tmp_path, synthetic_dataset)
    bundle = _reduced(strong_coop_bundle, tmp_path / "bad", True, {"graphs": MIX})
    record = gate_check.check(bundle, root, "test", 3)
    verdict = record["verdict"]
    assert verdict["passed"] is False and verdict["culprit"] == "latent_decoder" and verdict["images"] == 3
    assert record["graph_plans"] == MIX and record["plan"] == "ort-cpu:int8"  # as the bench record names it
    assert "per-graph plan" in record["plan_reason"]
    assert "graph latent_decoder on ort-cpu:int8 is to blame" in verdict["reason"]
    assert verdict["saliency_max_abs"] > 0.05
    assert verdict["saliency_max_abs"] == pytest.approx(_delta_max(bundle, _x(bundle, root, test_ids[:3])), rel=1e-5)
    # The same mix with an exact latent_decoder artefact: judged, and within the gate.
    good = gate_check.check(_reduced(strong_coop_bundle, tmp_path / "good", False, {"graphs": MIX}), root, "test", 3)
    assert good["graph_plans"] == MIX and good["verdict"]["passed"] is True and good["verdict"]["saliency_max_abs"] < 1e-6


def _int8_fastest(manifest, backend: str, precision: str, threads) -> float:
    return 0.5 if (backend, precision) == ("ort-cpu", "int8") else 1.0


def test_a_single_reduced_plan_auto_takes_is_judged_not_the_recorded_fp32(tmp_path: Path, strong_coop_bundle: Path,
                                                                          synthetic_dataset: Path, simulated_cpu,
                                                                          monkeypatch) -> None:
    from salkit.runtime import predictor

    simulated_cpu("avx512")
    # Any auto left inside the gate would now take int8: the float32 reference must be named, not chosen.
    monkeypatch.setattr(predictor, "probe_predict", _int8_fastest)
    root, _ = _root(tmp_path, synthetic_dataset)
    passed_at_export = {"ort-cpu:int8": {"passed": True, "int8_vnni": True, "reason": "test"}}
    bundle = _reduced(strong_coop_bundle, tmp_path / "b", True, {}, passed_at_export)
    record = gate_check.check(bundle, root, "test", 3, probe=_int8_fastest)
    assert record["plan"] == "ort-cpu:int8" and record["graph_plans"] == {}
    assert record["verdict"]["passed"] is False and record["verdict"]["culprit"] == "latent_decoder"
    assert "graph latent_decoder is to blame" in record["verdict"]["reason"] and record["verdict"]["saliency_max_abs"] > 0.05


def test_float32_on_another_engine_is_judged_and_the_images_are_the_other_splits(
        tmp_path: Path, tiny_coop_bundle: Path, synthetic_dataset: Path, simulated_cpu, monkeypatch) -> None:
    from salkit.export.precision import gate as precision_gate

    simulated_cpu("avx2")
    root, test_ids = _root(tmp_path, synthetic_dataset)
    seen: dict = {}

    class Recorder:
        def __init__(self, manifest, images):
            seen["images"] = images

        def judge(self, plan):
            seen["plan"] = plan
            return {"passed": True, "reason": "recorded"}

    monkeypatch.setattr(precision_gate, "Gate", Recorder)
    openvino_fastest = lambda m, backend, precision, threads: 0.5 if backend == "openvino" else 1.0  # noqa: E731 - a stand-in probe
    if "openvino:fp32" not in _plans_here(tiny_coop_bundle, openvino_fastest):
        pytest.skip("OpenVINO is not usable here")
    record = gate_check.check(tiny_coop_bundle, root, "test", 3, probe=openvino_fastest)
    assert record["plan"] == seen["plan"] == "openvino:fp32" and record["images"] == 3
    assert record["verdict"]["reason"] == "recorded; every graph runs float32 here, not all on the reference engine"
    assert np.array_equal(seen["images"], _x(tiny_coop_bundle, root, test_ids[:3]))


def _plans_here(bundle: Path, probe) -> str:
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.plan import choose_plan

    return choose_plan(load_bundle(bundle), probe=probe).name


def test_the_reference_plan_passes_as_itself_and_the_cli_writes_json(tmp_path: Path, tiny_coop_bundle: Path,
                                                                      synthetic_dataset: Path, simulated_cpu,
                                                                      monkeypatch) -> None:
    from salkit.runtime import predictor

    simulated_cpu("avx2")
    monkeypatch.setattr(predictor, "probe_predict", lambda m, backend, precision, threads: 1.0 if backend == "ort-cpu" else 2.0)
    root, _ = _root(tmp_path, synthetic_dataset)
    out = tmp_path / "gate.json"
    result = CliRunner().invoke(gate_check.main, ["--engine", str(tiny_coop_bundle), "--data", str(root), "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["plan"] == "ort-cpu:fp32" and record["verdict"]["passed"] and record["images"] == 4
    assert record["verdict"]["reason"] == "the plan is the float32 reference (ort-cpu:fp32) on every graph"


def test_a_root_without_the_split_is_one_line_error(tmp_path: Path, tiny_coop_bundle: Path) -> None:
    (tmp_path / "img").mkdir()
    with pytest.raises(SalkitError, match="has no test.txt"):
        gate_check.split_images(tmp_path, "test", 3)
    (tmp_path / "test.txt").write_text("missing\n")
    result = CliRunner().invoke(gate_check.main, ["--engine", str(tiny_coop_bundle), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "none of the 1 ids" in result.output
