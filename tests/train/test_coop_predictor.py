"""Torch reference predictor: split (one encode) vs whole generator, the pipeline, uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.base.errors import SalkitError
from salkit.kernels.entropy import uncertainty_maps
from salkit.train.coop.predictor import load_coop, predict, predict_tensor, refine_tensor
from tests.coop_reference import cooperative_reference

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model(tiny_coop_checkpoint):
    return load_coop(tiny_coop_checkpoint)


def test_split_path_equals_whole_generator_path(model) -> None:
    x = torch.randn(2, 3, 64, 64)
    latents = torch.randn(4, 2, 8)  # (N, B, d)
    split = predict_tensor(model, x, latents, steps=3, step_size=0.4, path="split")
    whole = predict_tensor(model, x, latents, steps=3, step_size=0.4, path="whole")
    assert set(split) == {"saliency", "generator", "predictive", "aleatoric", "epistemic"}
    for key in split:
        assert split[key].shape == (2, 1, 64, 64)
        torch.testing.assert_close(split[key], whole[key], atol=1e-5, rtol=0)


def test_pipeline_against_a_step_by_step_reference(model) -> None:
    torch.manual_seed(3)
    x, latents, noise = torch.randn(2, 3, 64, 64), torch.randn(3, 2, 8), torch.randn(2, 2, 1, 64, 64)
    out = predict_tensor(model, x, latents, steps=2, step_size=0.4, noise=noise)
    # Reference: per-sample whole-generator passes, explicit autograd gradients (tests/coop_reference.py).
    expected, probs = cooperative_reference(model.generator, model.energy, x, latents, 2, 0.4, noise)
    torch.testing.assert_close(out["saliency"], torch.from_numpy(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["generator"], probs.mean(0), atol=1e-6, rtol=0)
    ref = uncertainty_maps(probs.numpy())
    for key in ("predictive", "aleatoric", "epistemic"):
        torch.testing.assert_close(out[key], torch.from_numpy(ref[key]), atol=1e-5, rtol=0)
    assert not model.training


def test_noise_free_steps_change_the_map_and_zero_steps_keep_the_mean(model) -> None:
    x, latents = torch.randn(1, 3, 64, 64), torch.randn(2, 1, 8)
    still = predict_tensor(model, x, latents, steps=0, step_size=0.4, uncertainty=False)
    assert set(still) == {"saliency", "generator"}
    torch.testing.assert_close(still["saliency"], still["generator"], atol=1e-6, rtol=0)
    moved = predict_tensor(model, x, latents, steps=5, step_size=0.4, uncertainty=False)
    assert (moved["saliency"] - still["saliency"]).abs().max() > 1e-6
    refined = refine_tensor(model, x, still["generator"], steps=5, step_size=0.4)
    torch.testing.assert_close(refined, moved["saliency"], atol=1e-6, rtol=0)


def test_predict_draws_seeded_latents_and_bad_shapes_are_refused(model) -> None:
    x = torch.randn(2, 3, 64, 64)
    a = predict(model, x, samples=3, steps=1, seed=7)
    b = predict(model, x, samples=3, steps=1, seed=7)
    torch.testing.assert_close(a["saliency"], b["saliency"], atol=0, rtol=0)
    # sal-runtime's seed convention: default_rng(seed) float32 latents (N, B, d)
    latents = np.random.default_rng(7).standard_normal((3, 2, 8), dtype=np.float32)
    same = predict_tensor(model, x, torch.from_numpy(latents), steps=1, step_size=0.4)
    torch.testing.assert_close(a["saliency"], same["saliency"], atol=0, rtol=0)
    with pytest.raises(SalkitError, match="latents"):
        predict_tensor(model, x, torch.randn(3, 1, 8), steps=1, step_size=0.4)
    with pytest.raises(SalkitError, match="noise"):
        predict_tensor(model, x, torch.randn(3, 2, 8), steps=2, step_size=0.4, noise=torch.randn(1, 2, 1, 64, 64))
