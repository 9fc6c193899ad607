"""The runtime on bundles exported from real (tiny) checkpoints against the torch reference
predictors on the same checkpoint, latent samples and noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salkit.runtime.predictor import Predictor

torch.set_num_threads(2)


def _x(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


@pytest.fixture(scope="module", params=["tiny", "strong"])
def coop(request):
    """The tiny checkpoint, and the same with an energy whose descent moves the maps by ≥ 0.05."""
    from salkit.train.coop.predictor import load_coop

    bundle = request.getfixturevalue(f"{request.param}_coop_bundle")
    checkpoint = request.getfixturevalue(f"{request.param}_coop_checkpoint")
    with Predictor.from_bundle(bundle, backend="ort-cpu", threads=2) as predictor:
        yield predictor, load_coop(checkpoint), request.param == "strong"


def _moved(predictor, x, latents, steps) -> float:
    """Mean |descended − starting map|: how much the energy moves the maps."""
    start = predictor.predict_tensor(x, latents=latents, steps=0, uncertainty=False)["saliency"]
    return float(np.abs(predictor.predict_tensor(x, latents=latents, steps=steps, uncertainty=False)["saliency"] - start).mean())


@pytest.mark.parametrize("with_noise", [False, True])
def test_coop_bundle_matches_torch_reference_predictor(coop, with_noise: bool) -> None:
    from salkit.train.coop.predictor import predict_tensor

    predictor, model, strong = coop
    m = predictor.manifest
    size, d = m.input_size, m.coop["latent_dim"]
    n, k, step = 4, 3, float(m.coop["langevin_step"])
    rng = np.random.default_rng(1)
    x = _x(size)
    latents = rng.standard_normal((n, 2, d), dtype=np.float32)
    noise = rng.standard_normal((k, 2, 1, size, size), dtype=np.float32) if with_noise else None
    ours = predictor.predict_tensor(x, latents=latents, steps=k, noise_values=noise)
    ref = predict_tensor(model, torch.from_numpy(x), torch.from_numpy(latents), k, step,
                         noise=None if noise is None else torch.from_numpy(noise))
    for key in ("saliency", "predictive", "aleatoric", "epistemic"):
        assert np.abs(ours[key] - ref[key].numpy()).max() <= 1e-4, key
    whole = predictor.predict_tensor(x, latents=latents, steps=k, noise_values=noise, path="whole")
    assert np.abs(whole["saliency"] - ours["saliency"]).max() <= 1e-5
    if strong:
        assert _moved(predictor, x, latents, k) >= 0.05


def test_coop_bundle_refine_matches_torch(coop) -> None:
    from salkit.train.coop.predictor import refine_tensor

    predictor, model, _ = coop
    size = predictor.manifest.input_size
    x = _x(size, seed=2)
    maps = np.random.default_rng(3).uniform(0, 1, (2, 1, size, size)).astype(np.float32)
    ours = predictor.refine_tensor(x, maps, steps=3)
    ref = refine_tensor(model, torch.from_numpy(x), torch.from_numpy(maps), 3, float(predictor.manifest.coop["langevin_step"]))
    assert np.abs(ours - ref.numpy()).max() <= 1e-4


def test_qefpn_bundle_matches_torch_reference_predictor(tiny_qefpn_bundle, tiny_qefpn_checkpoint) -> None:
    from salkit.train.qefpn.predict import QEFPNReferencePredictor

    reference = QEFPNReferencePredictor.from_checkpoint(tiny_qefpn_checkpoint)
    with Predictor.from_bundle(tiny_qefpn_bundle, backend="ort-cpu", threads=2) as predictor:
        x = _x(predictor.manifest.input_size, seed=4)
        t = int(predictor.manifest.qefpn["broyden_iterations"])
        ours = predictor.predict_tensor(x, steps=t)
    ref = reference.predict_tensor(x, steps=t)
    assert np.abs(ours["saliency"] - ref["saliency"]).max() <= 1e-4
    assert np.allclose(ours["residual"], ref["residual"], rtol=1e-2, atol=1e-5)
    assert (ours["iterations"] <= t).all()


def test_bench_compares_with_torch_eager(tiny_coop_bundle, tiny_coop_checkpoint, tmp_path) -> None:
    import json

    from click.testing import CliRunner

    from salkit.runtime.cli.main import main

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--engine", str(tiny_coop_bundle), "--compare-torch", str(tiny_coop_checkpoint),
                                       "--batch", "1,2", "--repeat", "2", "--gemm-size", "256", "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    torch_rates = record["torch"]["per_batch"]
    assert set(torch_rates) == {"1", "2"} and all(v > 0 for v in torch_rates.values())
    best = max(torch_rates.values())
    assert record["torch"]["best_images_per_s"] == best
    for batch, entry in record["coop"].items():
        assert entry["torch_images_per_s"] == torch_rates[batch]
        assert entry["speedup_vs_torch"] == pytest.approx(entry["images_per_s"] / best)
    recipe = record["torch_best_recipe"]
    assert recipe["channels_last"] is True and recipe["dtype"] in ("float32", "bfloat16")
    assert recipe["dtype"] == ("bfloat16" if record["machine"]["cpu"]["bf16"] else "float32")
    assert recipe["best_images_per_s"] == max(recipe["per_batch"].values())
    for batch, entry in record["coop"].items():
        assert entry["torch_best_recipe_images_per_s"] == recipe["per_batch"][batch]
        assert entry["speedup_vs_torch_best"] == pytest.approx(entry["images_per_s"] / recipe["best_images_per_s"])
    # Both baselines compute the runtime's maps (same inputs and latents); fp32 here unless the CPU has bf16.
    assert record["torch"]["max_abs_vs_runtime"] <= 1e-4
    assert recipe["max_abs_vs_runtime"] <= (0.05 if recipe["dtype"] == "bfloat16" else 1e-4)
    assert "torch split reference" in result.output


def test_bench_without_the_train_plugin_says_what_to_install(tiny_coop_bundle, tiny_coop_checkpoint, monkeypatch) -> None:
    from click.testing import CliRunner

    from salkit.runtime.bench import baselines as bench_baselines
    from salkit.runtime.cli.main import main

    monkeypatch.setattr(bench_baselines, "entry_points", lambda group: [])
    result = CliRunner().invoke(main, ["bench", "--engine", str(tiny_coop_bundle), "--compare-torch", str(tiny_coop_checkpoint)])
    assert result.exit_code == 2 and "salkit[train]" in result.output


def test_torch_eager_baseline_computes_what_the_runtime_computes(coop) -> None:
    """The bench's torch side (whole generator N times, autograd gradient) does the same work as the
    runtime: same maps from the same inputs, also where the energy moves them."""
    from salkit.train import bench_torch

    predictor, model, strong = coop
    m = predictor.manifest
    x = _x(m.input_size)
    latents = np.random.default_rng(3).standard_normal((3, 2, int(m.coop["latent_dim"])), dtype=np.float32)
    k = int(m.coop["langevin_steps"])
    eager = bench_torch.coop_eager(model, 3, k, float(m.coop["langevin_step"]))(x, latents)
    ours = predictor.predict_tensor(x, latents=latents, steps=k, uncertainty=False)["saliency"]
    np.testing.assert_allclose(eager, ours, atol=1e-4)
    if strong:
        assert _moved(predictor, x, latents, k) >= 0.05


def test_qefpn_torch_eager_baseline_computes_what_the_runtime_computes(tiny_qefpn_bundle, tiny_qefpn_checkpoint) -> None:
    from salkit.train import bench_torch

    with Predictor.from_bundle(tiny_qefpn_bundle, backend="ort-cpu", threads=2) as qefpn:
        t = 4
        xq = _x(qefpn.manifest.input_size)
        eager = bench_torch.qefpn_eager(bench_torch.load_torch_model(tiny_qefpn_checkpoint, None), t)(xq)
        ours = qefpn.predict_tensor(xq, steps=t)["saliency"]
        np.testing.assert_allclose(eager, ours, atol=1e-4)
        best = bench_torch.qefpn_best_recipe(bench_torch.load_torch_model(tiny_qefpn_checkpoint, None), t, bf16=False)(xq)
        np.testing.assert_allclose(best, ours, atol=1e-4)


def test_torch_best_recipe_runs_in_bf16_when_asked(coop, request) -> None:
    """bf16 autocast really changes the arithmetic (the maps move, a little), channels_last does not."""
    from salkit.train import bench_torch

    predictor, _, strong = coop
    tiny_coop_checkpoint = request.getfixturevalue("strong_coop_checkpoint" if strong else "tiny_coop_checkpoint")
    m = predictor.manifest
    x = _x(m.input_size)
    latents = np.random.default_rng(4).standard_normal((3, 2, int(m.coop["latent_dim"])), dtype=np.float32)
    ours = predictor.predict_tensor(x, latents=latents, steps=2)["saliency"]
    step = float(m.coop["langevin_step"])
    fp32 = bench_torch.coop_best_recipe(bench_torch.load_torch_model(tiny_coop_checkpoint, None), 2, step, bf16=False)(x, latents)
    bf16 = bench_torch.coop_best_recipe(bench_torch.load_torch_model(tiny_coop_checkpoint, None), 2, step, bf16=True)(x, latents)
    np.testing.assert_allclose(fp32, ours, atol=1e-4)
    assert 1e-4 < np.abs(bf16 - ours).max() < 0.1


def test_qefpn_solve_keeps_numpy_blas_on_one_thread_and_restores_it(tiny_qefpn_bundle) -> None:
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = blas_threads()
    seen: list[set[int]] = []
    with Predictor.from_bundle(tiny_qefpn_bundle, backend="ort-cpu", threads=2) as predictor:
        runner = predictor.loop.runners.f
        run = runner.run
        runner.run = lambda binding: (seen.append(blas_threads()), run(binding))[1]
        predictor.predict_tensor(_x(predictor.manifest.input_size), steps=3)
    assert len(seen) == 4 and all(s == {1} for s in seen)  # z0 and 3 steps, all inside the solve
    assert blas_threads() == before
