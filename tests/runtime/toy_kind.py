"""A third model kind that exists only in the tests: one graph ``net`` (image → logits, a 1×1
convolution), saliency = sigmoid(logits / temperature), and one per-image statistic ``peak``.

It is registered under the name ``toy`` by the ``toy_kind`` fixture (and removed afterwards), and
goes through the generic paths of the runtime (Predictor, server, model config, bench) without
any of them naming it: what adding a kind takes on the runtime side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from salkit.runtime.bundle import Manifest
from salkit.runtime.kinds.base import GraphRuns, RunnerOf, RuntimeKind, join_chunks
from salkit.runtime.loops import check_steps
from tests.runtime.toy_bundles import MEAN, SIZE, STD, _graph

WEIGHT = np.array([0.8, -1.1, 0.5], dtype=np.float32)
BIAS = 0.2
TEMPERATURE = 2.0


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def reference(x: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """The toy's saliency in numpy: sigmoid((Σ_c w_c·x_c + b) / T), (B,3,S,S) → (B,1,S,S)."""
    logits = np.einsum("c,bchw->bhw", WEIGHT, x.astype(np.float64))[:, None] + BIAS
    return sigmoid(logits / temperature)


class ToyKind(RuntimeKind):
    name = "toy"
    graphs = ("net",)
    served_models = ("saliency",)
    stats = ("peak",)

    def defaults(self, manifest: Manifest, samples: int | None, steps: int | None) -> tuple[int, int]:
        return 1, check_steps("steps", self.settings(manifest)["steps"] if steps is None else steps, 0)

    def build_loop(self, manifest: Manifest, runner: RunnerOf, device: Any, precision: str = "fp32") -> Any:
        return runner("net"), float(self.settings(manifest)["temperature"])

    def predict(self, loop: Any, x: np.ndarray, chunks: list[slice], **options: Any) -> dict[str, np.ndarray]:
        net, temperature = loop
        parts = []
        for s in chunks:
            logits = net.infer({"image": x[s]})["logits"]
            parts.append({"saliency": sigmoid(logits / temperature).astype(np.float32),
                          "peak": logits.reshape(len(logits), -1).max(axis=1)})
        return join_chunks(parts)

    def graph_runs(self, samples: int, steps: int, loop: Any = None) -> dict[str, dict[str, GraphRuns]]:
        return {"split": {"net": GraphRuns(1)}}

    def bench_call(self, predictor: Any, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
        return lambda: predictor.predict_tensor(x)

    def graph_calls(self, loop: Any, batch: int, samples: int) -> dict[str, Callable[[], None]]:
        return {}


def build_toy_bundle(directory: Path) -> Manifest:
    directory.mkdir(parents=True, exist_ok=True)
    net = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(WEIGHT).reshape(1, 3, 1, 1))
        net.bias.fill_(BIAS)
    graph = _graph(directory, "net", net, (torch.randn(2, 3, SIZE, SIZE),), ["image"], ["logits"])
    manifest = Manifest(
        model_kind="toy", model_name="toy_net", input_size=SIZE, mean=MEAN, std=STD, precision="fp32",
        batch={"min": 1, "opt": 2, "max": 2}, graphs={"net": graph},
        extra={"toy": {"temperature": TEMPERATURE, "steps": 0}},  # a kind without a manifest field of its own
    )
    manifest.write(directory)
    return manifest
