"""The split energy gradient in the runtime.

A bundle exported with ``energy_image`` and ``energy_grad_step`` (``export-trt --split-energy``)
runs X's share of U's first convolution once per predict / refine and one step graph per Langevin
step; a bundle without them (older ones, and the default export: the same checkpoint here) loads
and runs ``energy_grad`` every step as before. On the same inputs both give the same maps within
1e-5 in float32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from salkit.runtime.bundle import load_bundle
from salkit.runtime.kinds.coop import SPLIT_ENERGY_GRAPHS, splits_energy
from salkit.runtime.predictor import Predictor

TOLERANCE = 1e-5
MAPS = ("saliency", "predictive", "aleatoric", "epistemic")


@pytest.fixture(scope="module", params=["tiny", "strong"])
def bundles(request) -> tuple[Path, Path, bool]:
    """(a checkpoint's split bundle, its bundle without the split graphs, whether its energy moves the maps ≥ 0.05)."""
    split = request.getfixturevalue(f"{request.param}_coop_split_bundle")
    return split, request.getfixturevalue(f"{request.param}_coop_bundle"), request.param == "strong"


def _count_runs(predictor: Predictor, counts: dict[str, int]) -> None:
    """Count every graph run from now on (runners loaded later are not counted)."""
    for name, runner in predictor._runners.items():
        def counting(binding, name=name, run=runner.run):
            counts[name] = counts.get(name, 0) + 1
            return run(binding)

        runner.run = counting


def test_new_bundle_runs_the_split_energy_and_equals_the_old_path(bundles) -> None:
    new_path, old_path, strong = bundles
    assert set(SPLIT_ENERGY_GRAPHS) <= set(load_bundle(new_path).graphs)
    assert not set(SPLIT_ENERGY_GRAPHS) & set(load_bundle(old_path).graphs)  # the default export writes none
    with Predictor.from_bundle(new_path, backend="ort-cpu", precision="fp32", threads=2) as new, \
            Predictor.from_bundle(old_path, backend="ort-cpu", precision="fp32", threads=2) as old:
        # The new bundle loads the two split graphs and not energy_grad; the old one the reverse.
        assert new.loop.runners.split_energy and new.loop.runners.energy_grad is None
        assert {"energy_image", "energy_grad_step"} <= set(new._runners) and "energy_grad" not in new._runners
        assert not old.loop.runners.split_energy and "energy_grad" in old._runners
        assert not set(SPLIT_ENERGY_GRAPHS) & set(old._runners)
        m = new.manifest
        size, d, k = m.input_size, m.coop["latent_dim"], 5
        rng = np.random.default_rng(3)
        x = rng.standard_normal((2, 3, size, size), dtype=np.float32)
        latents = rng.standard_normal((4, 2, d), dtype=np.float32)
        noise = rng.standard_normal((k, 2, 1, size, size), dtype=np.float32)
        counts: dict[str, int] = {}
        _count_runs(new, counts)
        for kicks in (noise, None):
            ours = new.predict_tensor(x, latents=latents, steps=k, noise_values=kicks)
            theirs = old.predict_tensor(x, latents=latents, steps=k, noise_values=kicks)
            for key in MAPS:
                assert np.abs(ours[key] - theirs[key]).max() <= TOLERANCE, key
        # Per predict: X's share once, then one step graph per Langevin step; the bench counts the same.
        assert counts == {"encoder": 2, "latent_decoder": 2, "energy_image": 2, "energy_grad_step": 2 * k}
        runs = new.runtime_kind.graph_runs(4, k, new.loop)["split"]
        assert {name: run.calls for name, run in runs.items()} == {"encoder": 1, "latent_decoder": 1, "energy_image": 1,
                                                                  "energy_grad_step": k}
        assert set(old.runtime_kind.graph_runs(4, k, old.loop)["split"]) == {"encoder", "latent_decoder", "energy_grad"}
        whole = new.predict_tensor(x, latents=latents, steps=k, path="whole")  # the authors' path splits the energy too
        assert np.abs(whole["saliency"] - ours["saliency"]).max() <= TOLERANCE  # (ours: the noise-free predict)
        counts.clear()
        maps = rng.uniform(0.05, 0.95, (2, 1, size, size)).astype(np.float32)
        refined = new.refine_tensor(x, maps, steps=k)
        assert np.abs(refined - old.refine_tensor(x, maps, steps=k)).max() <= TOLERANCE
        assert counts == {"energy_image": 1, "energy_grad_step": k}
        counts.clear()
        start = new.predict_tensor(x, latents=latents, steps=0, uncertainty=False)["saliency"]
        assert "energy_image" not in counts and "energy_grad_step" not in counts  # no step, nothing to precompute
        if strong:  # the descent moves the maps: the equality above compared something
            assert np.abs(ours["saliency"] - start).mean() >= 0.05


def test_a_reduced_energy_grad_keeps_the_whole_graph() -> None:
    """A plan whose precision gives energy_grad an artefact the split graphs lack (int8 gated and
    timed by the export) keeps running energy_grad; every other plan of a new bundle splits."""
    from salkit.runtime.bundle import GraphSpec, Manifest

    spec = GraphSpec(file="g.onnx", sha256="0", inputs=(), outputs=())
    names = ("generator", "encoder", "latent_decoder", "energy", "energy_grad", *SPLIT_ENERGY_GRAPHS)
    new = Manifest(model_kind="coop", model_name="m", input_size=64, mean=(0, 0, 0), std=(1, 1, 1), precision="fp32",
                   batch={"min": 1, "opt": 1, "max": 1}, graphs={n: spec for n in names})
    old = dataclasses.replace(new, graphs={n: spec for n in names if n not in SPLIT_ENERGY_GRAPHS})
    artefact = {"file": "x.int8.onnx", "sha256": "0"}
    assert splits_energy(new, "fp32") and splits_energy(new, "bf16") and not splits_energy(old, "fp32")
    int8_grad = dataclasses.replace(new, variants={"int8": {"encoder": artefact, "energy_grad": artefact}})
    assert not splits_energy(int8_grad, "int8") and splits_energy(int8_grad, "fp32")
    assert splits_energy(dataclasses.replace(new, variants={"int8": {"encoder": artefact}}), "int8")
    all_int8 = {"int8": {n: artefact for n in ("energy_grad", *SPLIT_ENERGY_GRAPHS)}}
    assert splits_energy(dataclasses.replace(new, variants=all_int8), "int8")


def test_an_old_bundle_runs_energy_grad_every_step(toy_coop) -> None:
    """The runtime tests' toy bundle is of the older layout: it runs energy_grad K times a predict."""
    assert not set(SPLIT_ENERGY_GRAPHS) & set(toy_coop.manifest.graphs)
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1) as predictor:
        assert not predictor.loop.runners.split_energy
        counts: dict[str, int] = {}
        _count_runs(predictor, counts)
        predictor.predict_tensor(np.zeros((1, 3, 32, 32), np.float32), steps=3)
    assert counts == {"encoder": 1, "latent_decoder": 1, "energy_grad": 3}


def test_bench_counts_the_graphs_the_split_predict_runs(tiny_coop_split_bundle: Path) -> None:
    """The bench's FLOPs per image follow the loop: X's share once, K step graphs (not K energy_grad)."""
    from salkit.runtime.bench.flops import graph_flops
    from salkit.runtime.bench.record import flops_per_image

    with Predictor.from_bundle(tiny_coop_split_bundle, backend="ort-cpu", precision="fp32", threads=1) as predictor:
        f = {name: graph_flops(predictor.manifest.graph_path(name)) for name in predictor.manifest.graphs if name != "energy"}
        counted = flops_per_image(predictor, 4, 5)
    assert 0 < f["energy_image"] < f["energy_grad_step"] < f["energy_grad"]  # the step convolves one input channel, not four
    assert counted["split"] == f["encoder"] + 4 * f["latent_decoder"] + f["energy_image"] + 5 * f["energy_grad_step"]
    assert counted["whole"] == 4 * f["generator"] + f["energy_image"] + 5 * f["energy_grad_step"]
