"""experiments.gate_check: the bundle's recorded plan judged by the export gate on another split's
photographs (the test split export never saw)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from experiments import gate_check
from salkit.base.errors import SalkitError


def _root(tmp_path: Path, synthetic_dataset: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset / "img", root / "img")
    stems = sorted(p.stem for p in (root / "img").iterdir())
    (root / "train.txt").write_text("\n".join(stems[:8]) + "\n")
    (root / "test.txt").write_text("\n".join(stems[8:]) + "\n")
    return root, stems[8:]


def _with_plan(bundle: Path, out: Path, plan: str) -> Path:
    shutil.copytree(bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["precision_choice"] = {"plan": plan, "cpu": "test", "reason": "test"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_the_recorded_plan_is_judged_on_the_other_splits_photographs(tmp_path: Path, tiny_coop_bundle: Path,
                                                                     synthetic_dataset: Path, monkeypatch) -> None:
    from salkit.base.images import decode_image, preprocess
    from salkit.export.precision import gate as precision_gate

    root, test_ids = _root(tmp_path, synthetic_dataset)
    seen: dict = {}

    class Recorder:
        def __init__(self, manifest, images):
            seen["images"] = images

        def judge(self, plan):
            seen["plan"] = plan
            return {"passed": False, "reason": "recorded", "saliency_mean_abs": 1.0}

    monkeypatch.setattr(precision_gate, "Gate", Recorder)
    bundle = _with_plan(tiny_coop_bundle, tmp_path / "b", "openvino:fp32")
    record = gate_check.check(bundle, root, "test", 3)
    assert record["plan"] == "openvino:fp32" and record["images"] == 3 and record["verdict"]["reason"] == "recorded"
    size = record_size = json.loads((bundle / "manifest.json").read_text())["input_size"]
    from salkit.runtime.bundle import load_bundle

    m = load_bundle(bundle)
    expected = preprocess([decode_image(root / "img" / f"{i}.jpg") for i in test_ids[:3]], size, m.mean, m.std)
    assert seen["plan"] == "openvino:fp32" and np.array_equal(seen["images"], expected) and record_size == size


def test_a_float32_choice_passes_as_the_reference_and_the_cli_writes_json(tmp_path: Path, tiny_coop_bundle: Path,
                                                                          synthetic_dataset: Path) -> None:
    root, _ = _root(tmp_path, synthetic_dataset)
    out = tmp_path / "gate.json"
    result = CliRunner().invoke(gate_check.main, ["--engine", str(tiny_coop_bundle), "--data", str(root), "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["plan"] == "ort-cpu:fp32" and record["verdict"]["passed"] and record["images"] == 4


def test_a_root_without_the_split_is_one_line_error(tmp_path: Path, tiny_coop_bundle: Path) -> None:
    (tmp_path / "img").mkdir()
    with pytest.raises(SalkitError, match="has no test.txt"):
        gate_check.split_images(tmp_path, "test", 3)
    (tmp_path / "test.txt").write_text("missing\n")
    result = CliRunner().invoke(gate_check.main, ["--engine", str(tiny_coop_bundle), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "none of the 1 ids" in result.output
