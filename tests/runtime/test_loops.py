"""The runtime loops (ort-cpu, numpy) against torch eager references on the same weights,
latent samples and noise; the encoder-split path against the whole-generator path."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from salkit.kernels.broyden import broyden
from salkit.kernels.entropy import uncertainty_maps
from salkit.runtime.predictor import Predictor
from tests.coop_reference import cooperative_reference

torch.set_num_threads(1)
STEP = 0.4


def torch_coop_reference(model, x, latents, steps, noise=None, start=None):
    """The authors' way: the whole generator once per latent sample; the energy gradient by autograd."""
    return cooperative_reference(model.generator, model.energy, x, latents, steps, STEP, noise, start)


@pytest.fixture(scope="module")
def coop_predictor(toy_coop):
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1) as predictor:
        yield predictor


def _inputs(batch: int = 3, samples: int = 4, steps: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    latents = rng.standard_normal((samples, batch, 3), dtype=np.float32)
    noise = rng.standard_normal((steps, batch, 1, 32, 32), dtype=np.float32)
    return x, latents, noise


@pytest.mark.parametrize("with_noise", [False, True])
def test_coop_predict_matches_torch_reference(toy_coop, coop_predictor, with_noise: bool) -> None:
    x, latents, noise = _inputs()
    noise = noise if with_noise else None
    out = coop_predictor.predict_tensor(x, latents=latents, steps=3, noise_values=noise, uncertainty=True)
    expected, probs = torch_coop_reference(toy_coop.model, x, latents, 3, noise)
    assert out["saliency"].shape == (3, 1, 32, 32)
    assert np.abs(out["saliency"] - expected).max() <= 1e-4
    # the Langevin steps moved the map: the comparison is not of the starting point only
    assert np.abs(expected - probs.mean(0).numpy()).max() > 1e-3
    ref_unc = uncertainty_maps(probs.double())
    for key in ("predictive", "aleatoric", "epistemic"):
        assert np.abs(out[key] - ref_unc[key].numpy()).max() <= 1e-4, key
    assert out["epistemic"].max() > 1e-3  # the samples differ, so there is something to measure


def test_split_path_equals_whole_generator_path(coop_predictor) -> None:
    x, latents, _ = _inputs(batch=2, samples=5, seed=1)
    split = coop_predictor.predict_tensor(x, latents=latents, steps=2, path="split")
    whole = coop_predictor.predict_tensor(x, latents=latents, steps=2, path="whole")
    for key in split:
        assert np.abs(split[key] - whole[key]).max() <= 1e-5, key
    other = coop_predictor.predict_tensor(x, latents=latents[::-1].copy() + 1.0, steps=2, path="split")
    assert np.abs(other["saliency"] - split["saliency"]).max() > 1e-3  # the latents do matter


def test_refine_matches_torch_reference(toy_coop, coop_predictor) -> None:
    x, _, noise = _inputs(batch=2, steps=4, seed=2)
    maps = np.random.default_rng(3).uniform(0, 1, (2, 1, 32, 32)).astype(np.float32)
    maps[0, 0, :4] = 0.0  # saturated values go through the clipping, not to ±inf
    maps[1, 0, :4] = 1.0
    refined = coop_predictor.refine_tensor(x, maps, steps=4)
    expected, _ = torch_coop_reference(toy_coop.model, x, None, 4, start=maps)
    assert np.isfinite(refined).all()
    assert np.abs(refined - expected).max() <= 1e-4
    assert np.abs(refined - maps).max() > 1e-3


def test_langevin_memory_does_not_grow_with_steps_and_buffers_are_reused(coop_predictor) -> None:
    x, latents, _ = _inputs(batch=2, samples=2, seed=6)
    coop_predictor.predict_tensor(x, latents=latents, steps=2, uncertainty=False)  # builds the workspace
    workspaces = dict(coop_predictor.loop._workspaces)

    def peak(steps: int) -> int:
        tracemalloc.start()
        coop_predictor.predict_tensor(x, latents=latents, steps=steps, uncertainty=False)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    few, many = peak(2), peak(40)
    map_bytes = 2 * 32 * 32 * 4
    assert many - few < 4 * map_bytes, (few, many)  # 38 more steps, not 38 more maps
    assert coop_predictor.loop._workspaces == workspaces  # same buffers reused, none rebuilt


def test_qefpn_predict_matches_torch_broyden(toy_qefpn) -> None:
    model, q = toy_qefpn.model, toy_qefpn.manifest.qefpn
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 3, 32, 32), dtype=np.float32)
    with Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", threads=1) as predictor:
        out = predictor.predict_tensor(x)
        short = predictor.predict_tensor(x, steps=2)
    with torch.no_grad():
        xt = torch.from_numpy(x)
        inj = model.inject(xt)
        z, stats = broyden(lambda z: model.f(z, inj), torch.zeros(3, q["state_dim"]), max_iter=q["broyden_iterations"],
                           tol=q["broyden_tol"], memory=q["broyden_memory"], stop_mode="rel", fixed_iterations=True)
        expected = torch.sigmoid(model.decode(z)).numpy()
        fixed_point_gap = (model.f(z, inj) - z).abs().max().item()
    assert fixed_point_gap < 1e-4  # the reference really solved z = f(z, inj)
    assert np.abs(out["saliency"] - expected).max() <= 1e-4
    assert np.array_equal(out["iterations"], stats["iterations"].numpy().astype(np.float32))
    assert (out["iterations"] < q["broyden_iterations"]).all()
    assert np.allclose(out["residual"], stats["residual"].numpy(), atol=1e-5)
    assert (short["residual"] > out["residual"]).all()  # two iterations leave a larger residual


def test_qefpn_predicts_reuse_the_solver_buffers(toy_qefpn) -> None:
    rng = np.random.default_rng(8)
    first, second = (rng.standard_normal((2, 3, 32, 32), dtype=np.float32) for _ in range(2))
    with Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", threads=1) as predictor:
        predictor.predict_tensor(first)
        solver = predictor.loop.workspace(2).solver
        kept = {name: id(buffer) for name, buffer in solver._buffers.items()}
        again = predictor.predict_tensor(second)
        assert {name: id(buffer) for name, buffer in solver._buffers.items()} == kept and "us" in kept
    with Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", threads=1) as fresh:
        expected = fresh.predict_tensor(second)
    for key in ("saliency", "iterations", "residual"):  # what the first predict left behind changes nothing
        np.testing.assert_array_equal(again[key], expected[key])
