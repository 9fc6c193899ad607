"""GPU backends against ort-cpu on the toy bundles (skipped on machines without an NVIDIA GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from salkit.runtime.backends import availability
from salkit.runtime.predictor import Predictor

pytestmark = pytest.mark.gpu


def _x(batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt"])
def test_ort_gpu_providers_agree_with_cpu(toy_coop, backend: str) -> None:
    if availability(toy_coop.manifest)[backend]:
        pytest.skip(availability(toy_coop.manifest)[backend])
    x, latents = _x(), np.random.default_rng(1).standard_normal((4, 2, 3), dtype=np.float32)
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu") as cpu, Predictor.from_bundle(toy_coop.path, backend=backend) as gpu:
        a = cpu.predict_tensor(x, latents=latents, steps=3)
        b = gpu.predict_tensor(x, latents=latents, steps=3)
    for key in a:
        assert np.abs(a[key] - b[key]).max() <= 1e-4, key


def test_native_tensorrt_runner_with_engines_agrees_with_cpu(toy_coop, tmp_path) -> None:
    trt = pytest.importorskip("tensorrt")
    from salkit.export.batch_profile import BatchProfile
    from salkit.export.engines_trt import build_engine
    from salkit.runtime.backends import create_runner
    from salkit.runtime.backends.base import HOST
    from salkit.runtime.backends.cuda_device import cuda_device_or_host
    from salkit.runtime.backends.trt import TrtRunner

    plan = tmp_path / "energy_grad.plan"
    build_engine(trt, trt.Logger(trt.Logger.WARNING), toy_coop.manifest.graph_path("energy_grad"), plan,
                 BatchProfile(1, 2, 4), b"")
    feeds = {"saliency": np.random.default_rng(2).standard_normal((2, 1, 32, 32), dtype=np.float32), "image": _x()}
    with create_runner("ort-cpu", toy_coop.manifest, "energy_grad") as cpu:
        expected = cpu.infer(feeds)["grad"]
    # Host buffers (staged through pinned memory) and, with CuPy, device buffers bound in place.
    for device in (HOST, cuda_device_or_host()):
        with TrtRunner(plan, toy_coop.manifest.graphs["energy_grad"], device=device) as runner:
            ins, outs = runner.allocate({k: v.shape for k, v in feeds.items()})
            for k, v in feeds.items():
                device.upload(v, ins[k])
            binding = runner.bind(ins, outs)
            for _ in range(2):  # a binding runs again without re-binding
                runner.run(binding)
                assert np.abs(device.download(outs["grad"]) - expected).max() <= 1e-4
