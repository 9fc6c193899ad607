"""The QE-FPN bundle: manifest, graphs vs the checkpoint's module, and a Broyden solve over ``f``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from salkit.export.trt_ops import check_graph
from salkit.kernels.broyden import broyden
from salkit.runtime.bundle import DYNAMIC, load_bundle

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def qefpn(tiny_qefpn_bundle: Path, tiny_qefpn_checkpoint: Path):
    from salkit.train.engine.checkpoint import build_model, load_checkpoint

    manifest = load_bundle(tiny_qefpn_bundle)
    sessions = {n: ort.InferenceSession(str(manifest.graph_path(n)), providers=["CPUExecutionProvider"])
                for n in manifest.graphs}
    return manifest, sessions, build_model(load_checkpoint(tiny_qefpn_checkpoint)).eval()


def test_manifest(qefpn) -> None:
    manifest, _, model = qefpn
    assert manifest.model_kind == "qefpn" and set(manifest.graphs) == {"encoder", "f", "decoder"}
    d = model.state_dim
    assert manifest.qefpn["state_dim"] == d
    assert manifest.qefpn["broyden_iterations"] == model.solver_config.f_max_iter
    assert manifest.qefpn["broyden_memory"] == model.solver_config.memory
    f = manifest.graphs["f"]
    assert [(t.name, t.shape) for t in f.inputs] == [("z", (DYNAMIC, d)), ("injection", (DYNAMIC, d))]
    assert [(t.name, t.shape) for t in f.outputs] == [("f_z", (DYNAMIC, d))]
    assert manifest.graphs["decoder"].outputs[0].shape == (DYNAMIC, 1, 64, 64)
    for name, spec in manifest.graphs.items():
        assert spec.validation["max_rel_err"] <= 1e-4 and "data_max_rel_err" in spec.validation, name
        ops = check_graph(onnx.load(str(manifest.graph_path(name))), name)
        assert "Bernoulli" not in ops  # the quasi-equilibrium mask is training-only


def test_broyden_over_the_f_graph_reproduces_the_torch_forward(qefpn) -> None:
    manifest, sessions, model = qefpn
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = torch.sigmoid(model(x)).numpy()
    inj = sessions["encoder"].run(["injection"], {"image": x.numpy()})[0]

    def f(z: np.ndarray) -> np.ndarray:
        return sessions["f"].run(["f_z"], {"z": z.astype(np.float32), "injection": inj})[0].astype(np.float64)

    settings = manifest.qefpn
    z, _ = broyden(f, np.zeros(inj.shape, np.float64), max_iter=settings["broyden_iterations"],
                   tol=settings["broyden_tol"], memory=settings["broyden_memory"], stop_mode=settings["stop_mode"])
    logits = sessions["decoder"].run(["logits"], {"z": z.astype(np.float32)})[0]
    got = 1 / (1 + np.exp(-logits))
    # Both sides stop at the solver tolerance, not at the exact fixed point.
    assert np.abs(got - expected).max() <= 2e-2
    assert np.abs(got - expected).mean() <= 2e-3
