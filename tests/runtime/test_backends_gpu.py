"""GPU backends against ort-cpu on the toy bundles (skipped on machines without an NVIDIA GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from salkit.runtime.backends import availability
from salkit.runtime.predictor import Predictor
from tests.runtime.toy_fixtures import toy_coop, toy_qefpn  # noqa: F401

pytestmark = pytest.mark.gpu


def _x(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_ort_gpu_providers_agree_with_cpu(toy_coop, backend: str) -> None:  # type: ignore[no-untyped-def]
    if availability(toy_coop.manifest)[backend]:
        pytest.skip(availability(toy_coop.manifest)[backend])
    x, latents = _x(), np.random.default_rng(1).standard_normal((4, 2, 3), dtype=np.float32)
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu") as cpu, Predictor.from_bundle(toy_coop.path, backend=backend) as gpu:
        a = cpu.predict_tensor(x, latents=latents, steps=3)
        b = gpu.predict_tensor(x, latents=latents, steps=3)
    for key in a:
        assert np.abs(a[key] - b[key]).max() <= 1e-4, key


def test_native_tensorrt_runner_with_engines_agrees_with_cpu(toy_coop, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorrt")
    from salkit.runtime.backends.trt import TrtRunner

    engines = pytest.importorskip("salkit.export.engines_trt")
    plan = tmp_path / "energy_grad.plan"
    engines.build_engine_file(toy_coop.path / "energy_grad.onnx", plan) if hasattr(engines, "build_engine_file") else pytest.skip("no engine builder")
    feeds = {"saliency": np.zeros((2, 1, 32, 32), np.float32), "image": _x()}
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu") as cpu:
        expected = cpu._runners["energy_grad"].infer(feeds)["grad"]
    for graph in (False, True):
        with TrtRunner(plan, toy_coop.manifest.graphs["energy_grad"], cuda_graph=graph) as runner:
            ins, outs = runner.allocate({k: v.shape for k, v in feeds.items()})
            for k, v in feeds.items():
                ins[k][...] = v
            binding = runner.bind(ins, outs)
            for _ in range(3):  # plain, captured, launched
                runner.run(binding)
                assert np.abs(outs["grad"] - expected).max() <= 1e-4
