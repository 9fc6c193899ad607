"""Old checkpoints and bundles still load after salkit's modules move.

A checkpoint is a ``torch.save`` of plain data (dicts, lists, numbers, strings, tensors, numpy RNG
state): unpickling it names torch, numpy and standard-library classes, never a salkit one, so no
salkit module path is part of the format. A bundle is a JSON manifest and ONNX graphs that name
no module either. The tests hold both to that, load a checkpoint laid out as at commit ede1292
(before the sub-package split) from plain data, and run the current runtime on a manifest that
commit's ``export-trt`` wrote (tests/fixtures/ede1292/qefpn_manifest.json: the tiny QE-FPN of
``tiny_qefpn_checkpoint``, 64², fp32; only its calibration folder's path is shortened).
"""

from __future__ import annotations

import json
import pickletools
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

OLD = Path(__file__).parent / "fixtures" / "ede1292"
MODULE_PATH = re.compile(rb"salkit\.(base|kernels|train|export|runtime)\b")


def _pickled_globals(checkpoint: Path) -> set[str]:
    """The classes and functions the checkpoint's pickle names (``module name``)."""
    with zipfile.ZipFile(checkpoint) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        ops = list(pickletools.genops(archive.read(name)))
    found = {str(arg) for op, arg, _ in ops if op.name in ("GLOBAL", "INST")}
    # STACK_GLOBAL (protocol ≥ 4) takes module and name from the two strings before it.
    for i, (op, _, _) in enumerate(ops):
        if op.name == "STACK_GLOBAL":
            found.add(f"{ops[i - 2][1]} {ops[i - 1][1]}")
    return found


@pytest.mark.parametrize("fixture", ["tiny_coop_checkpoint", "tiny_qefpn_checkpoint"])
def test_a_checkpoint_pickles_no_salkit_class(fixture: str, request: pytest.FixtureRequest) -> None:
    """Trained by the real trainers (optimiser and scheduler states, RNG, train config)."""
    found = _pickled_globals(request.getfixturevalue(fixture))
    assert found, "no pickled class at all: the scan reads nothing"
    assert {g.split()[0].split(".")[0] for g in found} <= {"torch", "numpy", "collections", "_codecs", "builtins"}, found
    assert not [g for g in found if g.startswith("salkit")]


def test_a_checkpoint_laid_out_as_at_ede1292_loads(tmp_path: Path) -> None:
    import random

    import torch

    from salkit.train.engine.checkpoint import build_model, load_checkpoint
    from salkit.train.engine.registry import create_model

    model = create_model("qefpn", preset="tiny", image_size=32)
    old = {  # train/engine/checkpoint.py's layout at ede1292, from plain data
        "format": "salkit-checkpoint", "format_version": 1,
        "model": {"kind": "qefpn", "name": "qefpn", "config": dict(model.config)},
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizers": {}, "schedulers": {}, "step": 3, "epoch": 1,
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "train_config": {"loop": {"batch_in_epoch": 0}}, "versions": {"salkit": "0.1.0", "torch": torch.__version__},
    }
    torch.save(old, tmp_path / "last.pt")
    checkpoint = load_checkpoint(tmp_path / "last.pt", expect_kind="qefpn")
    rebuilt = build_model(checkpoint)
    assert (checkpoint["step"], checkpoint["epoch"]) == (3, 1)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in old["state_dict"].items())


@pytest.mark.parametrize("fixture", ["tiny_coop_bundle", "tiny_qefpn_bundle"])
def test_a_bundle_names_no_salkit_module(fixture: str, request: pytest.FixtureRequest) -> None:
    bundle = request.getfixturevalue(fixture)
    files = sorted(p for p in bundle.iterdir() if p.is_file())
    assert any(p.suffix == ".onnx" for p in files) and (bundle / "manifest.json") in files
    assert not [p.name for p in files if MODULE_PATH.search(p.read_bytes())]


def test_the_runtime_runs_a_manifest_written_at_ede1292(tiny_qefpn_bundle: Path, tmp_path: Path) -> None:
    """The old manifest beside graphs of the same tiny QE-FPN exported now (same names and shapes;
    other bytes, so hashes are not compared)."""
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.predictor import Predictor

    old = json.loads((OLD / "qefpn_manifest.json").read_text())
    assert not MODULE_PATH.search((OLD / "qefpn_manifest.json").read_bytes())
    bundle = tmp_path / "old"
    bundle.mkdir()
    shutil.copy(OLD / "qefpn_manifest.json", bundle / "manifest.json")
    for graph in old["graphs"].values():
        shutil.copy(tiny_qefpn_bundle / graph["file"], bundle / graph["file"])
    manifest = load_bundle(bundle, verify_hashes=False)
    assert (manifest.model_kind, manifest.input_size, sorted(manifest.graphs)) == ("qefpn", 64, ["decoder", "encoder", "f"])
    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    with Predictor(manifest, backend="ort-cpu") as predictor:
        (saliency,) = predictor.predict([image], seed=0).saliency
    assert saliency.shape == (48, 40) and np.isfinite(saliency).all() and 0.0 <= saliency.min() <= saliency.max() <= 1.0
