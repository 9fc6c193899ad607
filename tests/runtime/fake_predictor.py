"""A deterministic stand-in for ``Predictor`` used by the batching and server protocol tests.

It follows the tensor-level contract of docs/architecture.md (``predict_tensor`` /
``refine_tensor`` / ``manifest`` / ``backend_name``) with closed-form outputs, so the tests can
compute the expected answer independently, and it records every call's batch size.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from salkit.runtime.bundle import Manifest

SIZE = 16


def make_manifest(kind: str = "coop", size: int = SIZE) -> Manifest:
    return Manifest(
        model_kind=kind,
        model_name=f"fake_{kind}",
        input_size=size,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        precision="fp32",
        batch={"min": 1, "opt": 8, "max": 16},
        graphs={},
        coop={"samples": 2, "langevin_steps": 3, "latent_dim": 4, "langevin_step": 0.1} if kind == "coop" else {},
        qefpn={"state_dim": 8, "broyden_iterations": 6} if kind == "qefpn" else {},
    )


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def expected_saliency(x: np.ndarray, samples: int, steps: int) -> np.ndarray:
    """The fake's closed form: sigmoid(channel mean + 0.1·samples + 0.01·steps), (B,1,S,S)."""
    return sigmoid(x.mean(axis=1, keepdims=True) + 0.1 * samples + 0.01 * steps).astype(np.float32)


def expected_uint8_saliency(img: np.ndarray, samples: int = 2, steps: int = 3) -> np.ndarray:
    """Expected SALIENCY for a UINT8 (B,H,W,3) batch: preprocess → closed form → resize back to H×W."""
    from salkit.base import images

    manifest = make_manifest()
    x = images.preprocess(list(img), SIZE, manifest.mean, manifest.std)
    sal = expected_saliency(x, samples, steps)
    return np.stack([images.resize_map(sal[i, 0], img.shape[1:3])[None] for i in range(len(img))])


def entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return -(q * np.log(q) + (1 - q) * np.log(1 - q))


class FakePredictor:
    backend_name = "fake"

    def __init__(
        self, kind: str = "coop", *, delay: float = 0.0, per_row: float = 0.0, size: int | None = None, free_calls: int = 0
    ) -> None:
        self.manifest = make_manifest(kind, size or SIZE)
        self.delay, self.per_row = delay, per_row
        self.free_calls = free_calls  # the first calls (a server's warm-up) skip the simulated compute time
        self.calls: list[tuple[str, int, dict]] = []  # (op, batch size, options)
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.closed = False
        self.gate: threading.Event | None = None  # when set, a call blocks until the event fires

    def _enter(self, op: str, rows: int, options: dict) -> None:
        with self.lock:
            self.calls.append((op, rows, options))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        if self.gate is not None:
            self.gate.wait(10)
        if (self.delay or self.per_row) and len(self.calls) > self.free_calls:
            time.sleep(self.delay + self.per_row * rows)

    def _leave(self) -> None:
        with self.lock:
            self.active -= 1

    def predict_tensor(self, x, *, samples=None, steps=None, noise=False, uncertainty=True, seed=None):
        x = np.asarray(x, dtype=np.float32)
        assert x.ndim == 4 and x.shape[1:] == (3, self.manifest.input_size, self.manifest.input_size), x.shape
        samples = self.manifest.coop.get("samples", 1) if samples is None else samples
        steps = self.manifest.coop.get("langevin_steps", 0) if steps is None else steps
        self._enter("predict", x.shape[0], dict(samples=samples, steps=steps, noise=noise, uncertainty=uncertainty, seed=seed))
        try:
            sal = expected_saliency(x, samples, steps)
            if seed is not None:  # one draw per batch, like a real sampler: batch-mates would change it
                sal = np.clip(sal + 0.01 * np.random.default_rng(seed).standard_normal(sal.shape), 0, 1).astype(np.float32)
            out = {"saliency": sal}
            if self.manifest.model_kind == "qefpn":
                out["iterations"] = np.full((x.shape[0],), 6.0, dtype=np.float32)
                out["residual"] = x.reshape(x.shape[0], -1).std(axis=1).astype(np.float32) * 1e-4
            elif uncertainty:
                h = entropy(sal).astype(np.float32)
                out.update(predictive=h, aleatoric=0.75 * h, epistemic=0.25 * h)
            return out
        finally:
            self._leave()

    def refine_tensor(self, x, maps, *, steps=None):
        x = np.asarray(x, dtype=np.float32)
        maps = np.asarray(maps, dtype=np.float32)
        assert maps.shape == (x.shape[0], 1, *x.shape[2:]), (x.shape, maps.shape)
        steps = self.manifest.coop.get("langevin_steps", 0) if steps is None else steps
        self._enter("refine", x.shape[0], dict(steps=steps))
        try:
            return expected_refine(maps, steps)
        finally:
            self._leave()

    def close(self) -> None:
        self.closed = True


def expected_refine(maps: np.ndarray, steps: int) -> np.ndarray:
    return np.clip(0.5 * maps + 0.25 + 0.001 * steps, 0, 1).astype(np.float32)
