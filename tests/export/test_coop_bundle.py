"""The coop bundle exported from the tiny trained checkpoint: contents, numerics, consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from salkit.export.trt_ops import check_graph
from salkit.runtime.bundle import DYNAMIC, load_bundle
from salkit.runtime.kinds import get_kind

torch.set_num_threads(2)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def coop(tiny_coop_bundle: Path):
    manifest = load_bundle(tiny_coop_bundle)
    return manifest, {name: _session(manifest.graph_path(name)) for name in manifest.graphs}


def test_manifest_describes_every_graph(coop, tiny_coop_checkpoint: Path) -> None:
    manifest, _ = coop
    assert manifest.model_kind == "coop" and set(get_kind("coop").graphs) <= set(manifest.graphs)
    assert manifest.input_size == 64 and manifest.precision == "fp32"
    assert manifest.coop["latent_dim"] == 8 and manifest.coop["map_space"] == "logit"
    trained = torch.load(tiny_coop_checkpoint, weights_only=False)["train_config"]["coop"]
    assert manifest.coop["langevin_step"] == trained["energy_step"]
    assert manifest.coop["langevin_steps"] == trained["langevin_steps"]
    assert manifest.engines["status"] == "not built" and manifest.engines["reason"]
    for key in ("salkit", "torch", "onnx", "onnxruntime", "opset"):
        assert manifest.versions[key]
    grad = manifest.graphs["energy_grad"]
    assert [t.name for t in grad.inputs] == ["saliency", "image"] and [t.name for t in grad.outputs] == ["grad"]
    assert grad.inputs[0].shape == (DYNAMIC, 1, 64, 64) and grad.outputs[0].dtype == "float32"
    feats = [t.name for t in manifest.graphs["encoder"].outputs]
    assert [t.name for t in manifest.graphs["latent_decoder"].inputs] == [*feats, "latent"]
    for name, spec in manifest.graphs.items():
        assert spec.validation["max_rel_err"] <= 1e-4, name
        assert "data_max_rel_err" in spec.validation, name  # checked on the synthetic images too
        model = onnx.load(str(manifest.graph_path(name)))
        assert model.ir_version <= 13 and model.opset_import[0].version >= 17
        check_graph(model, name)


def test_graphs_match_the_checkpoint_module_at_two_batch_sizes(coop, tiny_coop_checkpoint: Path) -> None:
    from salkit.train.engine.checkpoint import build_model, load_checkpoint

    manifest, sessions = coop
    model = build_model(load_checkpoint(tiny_coop_checkpoint)).eval()
    g = torch.Generator().manual_seed(5)
    for b in (2, 5):
        x, h = torch.randn(b, 3, 64, 64, generator=g), torch.randn(b, 8, generator=g)
        with torch.no_grad():
            logits = model.generator(x, h)
            energy = model.energy(logits, x)
        got_logits = sessions["generator"].run(["logits"], {"image": x.numpy(), "latent": h.numpy()})[0]
        got_energy = sessions["energy"].run(["energy"], {"saliency": logits.numpy(), "image": x.numpy()})[0]
        np.testing.assert_allclose(got_logits, logits.numpy(), rtol=1e-4, atol=1e-4 * float(logits.abs().max()))
        np.testing.assert_allclose(got_energy, energy.numpy(), rtol=1e-4, atol=1e-4 * float(energy.abs().max()))


def test_energy_grad_agrees_with_finite_differences_of_energy_graph(coop) -> None:
    _, sessions = coop
    rng = np.random.default_rng(0)
    b = 2
    y = (2 * rng.standard_normal((b, 1, 64, 64))).astype(np.float32)
    x = rng.standard_normal((b, 3, 64, 64)).astype(np.float32)

    def energy(y_: np.ndarray) -> np.ndarray:
        return sessions["energy"].run(["energy"], {"saliency": y_.astype(np.float32), "image": x})[0].astype(np.float64)

    grad = sessions["energy_grad"].run(["grad"], {"saliency": y, "image": x})[0].astype(np.float64)
    norm = np.sqrt((grad ** 2).sum(axis=(1, 2, 3)))  # (B,)
    # Central differences of the float32 energy graph: evaluation noise ~1e-6 on U limits what a
    # derivative can resolve, so directions carry most of their weight along the gradient (the
    # derivative is then ~|∇U|), restricted to random pixel subsets so a wrong region would show.
    # Steps this large see the curvature of U (sigmoid, ReLU kinks): Richardson extrapolation of
    # two central differences cancels their O(ε²) error term.
    eps = 0.5

    def derivative(v: np.ndarray) -> np.ndarray:
        def central(h: float) -> np.ndarray:
            return (energy(y + h * v) - energy(y - h * v)) / (2 * h)

        return (4 * central(eps / 2) - central(eps)) / 3

    masks = [np.ones_like(grad)] + [rng.random(grad.shape) < 0.3 for _ in range(3)]
    for mask in masks:
        v = grad * mask
        v = v / np.sqrt((v ** 2).sum(axis=(1, 2, 3), keepdims=True))
        fd = derivative(v)
        analytic = (grad * v).sum(axis=(1, 2, 3))
        assert np.all(np.abs(fd - analytic) <= 1e-2 * np.abs(analytic)), (fd, analytic)
    # A direction unrelated to the gradient: agreement down to the noise floor.
    v = rng.standard_normal(y.shape)
    v = v / np.sqrt((v ** 2).sum(axis=(1, 2, 3), keepdims=True))
    fd = derivative(v)
    assert np.all(np.abs(fd - (grad * v).sum(axis=(1, 2, 3))) <= 2e-3 * norm)


def test_split_generator_equals_whole_generator(coop) -> None:
    """One encoder pass + latent_decoder per sample ≡ generator(x, h) per sample (issue 10)."""
    manifest, sessions = coop
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    feat_names = [t.name for t in manifest.graphs["encoder"].outputs]
    feats = sessions["encoder"].run(feat_names, {"image": x})
    n = 4
    latents = rng.standard_normal((n, 2, 8)).astype(np.float32)
    # Features (B, C, h, w) repeated sample-major → (N·B, C, h, w), latents (N, B, d) → (N·B, d).
    feeds = {name: np.broadcast_to(f, (n, *f.shape)).reshape(n * 2, *f.shape[1:]) for name, f in zip(feat_names, feats, strict=True)}
    feeds["latent"] = latents.reshape(n * 2, 8)
    split = sessions["latent_decoder"].run(["logits"], feeds)[0].reshape(n, 2, 1, 64, 64)
    for k in range(n):
        whole = sessions["generator"].run(["logits"], {"image": x, "latent": latents[k]})[0]
        sigmoid = lambda z: 1 / (1 + np.exp(-z))
        assert np.abs(sigmoid(split[k]) - sigmoid(whole)).max() <= 1e-5
