"""The manifest's precision fields: variants beside the float32 graphs, the gate's verdicts and the
recorded choice; manifests written before these fields load as float32 only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from salkit.base.errors import SalkitError
from salkit.runtime.bundle import load_bundle, sha256_file, split_plan
from salkit.runtime.kinds import get_kind

GRAPHS = get_kind("coop").graphs


def _write_bundle(root: Path, **fields) -> Path:
    """A coop manifest over placeholder graph files (load_bundle checks presence and hashes only)."""
    root.mkdir()
    graphs = {}
    for name in GRAPHS:
        (root / f"{name}.onnx").write_bytes(name.encode())
        graphs[name] = {"file": f"{name}.onnx", "sha256": sha256_file(root / f"{name}.onnx"),
                        "inputs": [{"name": "x", "shape": [-1, 3, 8, 8], "dtype": "float32"}],
                        "outputs": [{"name": "y", "shape": [-1, 1, 8, 8], "dtype": "float32"}]}
    manifest = {"format": "salkit-bundle", "format_version": 1, "model_kind": "coop", "model_name": "coop",
                "input_size": 8, "mean": [0.5] * 3, "std": [0.25] * 3, "precision": "fp32",
                "batch": {"min": 1, "opt": 1, "max": 2}, "graphs": graphs, **fields}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _variant(root: Path, precision: str, name: str, content: bytes = b"q") -> dict:
    path = root / f"{name}.{precision}.onnx"
    path.write_bytes(content + name.encode())
    return {"file": path.name, "sha256": sha256_file(path), "validation": {"max_rel_err": 0.2}}


def test_old_manifest_loads_as_float32_only(tmp_path: Path) -> None:
    manifest = load_bundle(_write_bundle(tmp_path / "b"))
    assert manifest.variants == {} and manifest.precision_gate == {} and manifest.chosen_plan() is None
    assert manifest.precisions() == ["fp32"]
    assert manifest.graph_spec("encoder").file == "encoder.onnx"
    assert manifest.graph_spec("encoder", "bf16").file == "encoder.onnx"  # a compile hint: the fp32 graph
    assert manifest.gate_passed("ort-cpu:fp32") and not manifest.gate_passed("ort-cpu:int8")
    with pytest.raises(SalkitError, match="has no int8 artefacts"):
        manifest.graph_spec("encoder", "int8")


def test_variants_select_per_graph_and_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "b"
    _write_bundle(root)
    variants = {"int8": {g: _variant(root, "int8", g) for g in ("encoder", "latent_decoder")}}
    gate = {"ort-cpu:int8": {"passed": True, "saliency_mean_abs": 1e-3, "saliency_max_abs": 0.01,
                             "entropy_mean_abs": 2e-3, "reason": ""},
            "openvino:bf16": {"passed": False, "reason": "not supported on AMD EPYC"}}
    choice = {"plan": "ort-cpu:int8", "cpu": "AMD EPYC", "reason": "fastest passing plan", "seconds": {}}
    obj = json.loads((root / "manifest.json").read_text())
    obj.update(variants=variants, precision_gate=gate, precision_choice=choice)
    (root / "manifest.json").write_text(json.dumps(obj))
    manifest = load_bundle(root)
    assert manifest.precisions() == ["fp32", "int8"] and manifest.chosen_plan() == ("ort-cpu", "int8")
    assert manifest.graph_spec("encoder", "int8").file == "encoder.int8.onnx"
    assert manifest.graph_spec("encoder", "int8").inputs == manifest.graphs["encoder"].inputs
    assert manifest.graph_spec("energy_grad", "int8").file == "energy_grad.onnx"  # left alone by int8
    mixed = manifest.at_precision("int8", reference_graphs=("latent_decoder",))
    assert mixed.graphs["encoder"].file == "encoder.int8.onnx" and mixed.graphs["latent_decoder"].file == "latent_decoder.onnx"
    assert manifest.graphs["encoder"].file == "encoder.onnx"  # the original is untouched
    assert manifest.gate_passed("ort-cpu:int8") and not manifest.gate_passed("openvino:bf16")
    assert not manifest.gate_passed("openvino:int8")  # never gated: never used
    manifest.write(root)  # written back, read again: same fields
    again = load_bundle(root)
    assert (again.variants, again.precision_gate, again.precision_choice) == (variants, gate, choice)


def test_missing_or_changed_variant_file_is_named(tmp_path: Path) -> None:
    root = _write_bundle(tmp_path / "b")
    obj = json.loads((root / "manifest.json").read_text())
    obj["variants"] = {"int8": {"encoder": _variant(root, "int8", "encoder")}}
    obj["precision_choice"] = {"plan": "ort-cpu:int8", "cpu": "x"}
    (root / "manifest.json").write_text(json.dumps(obj))
    (root / "encoder.int8.onnx").write_bytes(b"changed")
    with pytest.raises(SalkitError, match="encoder.int8.onnx has SHA-256"):
        load_bundle(root)
    (root / "encoder.int8.onnx").unlink()
    with pytest.raises(SalkitError, match=r"int8 artefact of graph 'encoder' file encoder.int8.onnx is missing "
                                          r"\(the recorded precision choice ort-cpu:int8 needs it\)"):
        load_bundle(root)


def test_choice_without_artefacts_and_malformed_fields_are_refused(tmp_path: Path) -> None:
    root = _write_bundle(tmp_path / "b", precision_choice={"plan": "ort-cpu:int8", "cpu": "x"})
    with pytest.raises(SalkitError, match="recorded precision choice ort-cpu:int8 has no int8 artefacts"):
        load_bundle(root)
    bad = _write_bundle(tmp_path / "c", variants={"int8": {"nope": {"file": "x", "sha256": "y"}}})
    with pytest.raises(SalkitError, match="malformed manifest"):
        load_bundle(bad)
    with pytest.raises(SalkitError, match="not of the form"):
        split_plan("int8")


def test_runtime_cli_names_the_missing_artefact_of_the_recorded_choice(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from salkit.runtime.cli.main import main

    root = _write_bundle(tmp_path / "b")
    obj = json.loads((root / "manifest.json").read_text())
    obj["variants"] = {"int8": {"encoder": _variant(root, "int8", "encoder")}}
    obj["precision_choice"] = {"plan": "ort-cpu:int8", "cpu": "x"}
    (root / "manifest.json").write_text(json.dumps(obj))
    (root / "encoder.int8.onnx").unlink()
    (tmp_path / "in").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    result = CliRunner().invoke(main, ["predict", "--engine", str(root), "--input", str(tmp_path / "in"),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "encoder.int8.onnx is missing (the recorded precision choice ort-cpu:int8 needs it)" in result.output
    assert not (tmp_path / "out").exists()
