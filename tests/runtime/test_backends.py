"""The runner interface on ort-cpu: description, checked inference, bound runs, registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from salkit.base.errors import SalkitError
from salkit.runtime.backends import availability, create_runner, runner_class
from salkit.runtime.backends.ort import OrtRunner
from salkit.runtime.bundle import TensorSpec
from tests.runtime.toy_bundles import ToyEnergyGrad

torch.set_num_threads(1)


@pytest.fixture()
def grad_runner(toy_coop):
    with create_runner("ort-cpu", toy_coop.manifest, "energy_grad", threads=1) as runner:
        yield runner


def _feeds(batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "saliency": rng.standard_normal((batch, 1, 32, 32), dtype=np.float32),
        "image": rng.standard_normal((batch, 3, 32, 32), dtype=np.float32),
    }


def test_describe_reads_the_graph(grad_runner) -> None:
    inputs, outputs = grad_runner.describe()
    assert inputs == (TensorSpec("saliency", (-1, 1, 32, 32), "float32"), TensorSpec("image", (-1, 3, 32, 32), "float32"))
    assert [o.name for o in outputs] == ["grad"] and outputs[0].shape == (-1, 1, 32, 32)


def test_infer_matches_torch(grad_runner, toy_coop) -> None:
    feeds = _feeds()
    out = grad_runner.infer(feeds)["grad"]
    y = torch.from_numpy(feeds["saliency"]).requires_grad_(True)
    (expected,) = torch.autograd.grad(toy_coop.model.energy(y, torch.from_numpy(feeds["image"])).sum(), y)
    assert np.abs(out - expected.numpy()).max() <= 1e-5
    assert np.abs(ToyEnergyGrad(toy_coop.model.energy)(y, torch.from_numpy(feeds["image"])).detach().numpy() - out).max() <= 1e-5


def test_run_writes_into_the_bound_buffers(grad_runner) -> None:
    feeds = _feeds(3)
    ins, outs = grad_runner.allocate({k: v.shape for k, v in feeds.items()})
    binding = grad_runner.bind(ins, outs)
    target = outs["grad"]
    for k, v in feeds.items():
        ins[k][...] = v
    grad_runner.run(binding)
    assert outs["grad"] is target
    assert np.abs(target - grad_runner.infer(feeds)["grad"]).max() == 0.0
    ins["saliency"][...] = 0.0  # the same binding sees new input values: no copy was taken
    grad_runner.run(binding)
    assert np.abs(target - grad_runner.infer({**feeds, "saliency": np.zeros_like(feeds["saliency"])})["grad"]).max() == 0.0


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda f: {**f, "image": f["image"].astype(np.float64)}, ["'image'", "float32", "float64"]),
        (lambda f: {**f, "image": f["image"][0]}, ["'image'", "rank 4", "(3, 32, 32)"]),
        (lambda f: {**f, "image": np.zeros((2, 3, 16, 32), np.float32)}, ["axis 2", "32", "(2, 3, 16, 32)"]),
        (lambda f: {"saliency": f["saliency"]}, ["missing ['image']"]),
        (lambda f: {**f, "extra": f["image"]}, ["unexpected ['extra']"]),
        (lambda f: {k: v[:0] for k, v in f.items()}, ["empty batch"]),
        (lambda f: {**f, "image": f["image"][:1]}, ["batch size", "2", "1"]),
        (lambda f: {**f, "saliency": np.where(f["saliency"] > 1, np.nan, f["saliency"]).astype(np.float32)}, ["NaN"]),
    ],
)
def test_infer_refuses_bad_feeds(grad_runner, change, words) -> None:
    with pytest.raises(SalkitError) as err:
        grad_runner.infer(change(_feeds()))
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_runner_life_cycle(toy_coop) -> None:
    runner = create_runner("ort-cpu", toy_coop.manifest, "encoder", threads=1)
    with pytest.raises(SalkitError, match="not loaded"):
        runner.describe()
    with runner:
        assert runner.loaded
        assert [o.name for o in runner.describe()[1]] == ["feat0", "feat1"]
    assert not runner.loaded and runner.session is None


def test_graph_that_contradicts_the_manifest_is_refused(toy_coop) -> None:
    spec = toy_coop.manifest.graphs["energy_grad"]
    renamed = dataclasses.replace(spec, outputs=(TensorSpec("gradient", (-1, 1, 32, 32), "float32"),))
    with pytest.raises(SalkitError, match="'gradient'"):
        OrtRunner(toy_coop.path / spec.file, renamed, graph="energy_grad").load()
    with pytest.raises(SalkitError, match="does not exist"):
        OrtRunner(toy_coop.path / "nope.onnx", spec).load()
    garbage = toy_coop.path.parent / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(SalkitError, match="cannot load"):
        OrtRunner(garbage, spec).load()


def test_threads_option_is_checked(toy_coop) -> None:
    with pytest.raises(SalkitError, match="threads"):
        create_runner("ort-cpu", toy_coop.manifest, "encoder", threads=0)
    runner = create_runner("ort-cpu", toy_coop.manifest, "encoder", threads=2).load()
    assert runner.session.get_session_options().intra_op_num_threads == 2
    assert int(runner.session.get_session_options().graph_optimization_level) == 99  # ORT_ENABLE_ALL


def test_auto_picks_an_available_backend_and_says_which(toy_coop, tmp_path, monkeypatch) -> None:
    from salkit.runtime.plan import choose_plan

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the stand-in probe's choice is cached for this test only
    reasons = availability(toy_coop.manifest)
    plan = choose_plan(toy_coop.manifest, "auto", "fp32", probe=lambda m, b, p, t: 1.0 if b == "ort-cpu" else 2.0)
    assert reasons[plan.backend] == "" and plan.name in plan.reason
    assert plan.backend == "ort-cpu"  # this machine has no GPU
    for gpu in ("tensorrt", "ort-cuda", "ort-trt"):
        assert reasons[gpu]  # each says why not
        with pytest.raises(SalkitError, match=gpu):
            choose_plan(toy_coop.manifest, gpu, "fp32")
    with pytest.raises(SalkitError, match="unknown backend 'cuda'"):
        choose_plan(toy_coop.manifest, "cuda")
    assert runner_class("ort-cpu") is OrtRunner
