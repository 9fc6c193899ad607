"""Cooperative predict and refine, written once against the runner interface.

For a batch of B images, N latent samples and K Langevin steps (``predict``)::

    feats      = encoder(x)                                   once per image
    logits_n   = latent_decoder(feats repeated N times, h)    one call on N·B rows
    p          = mean_n sigmoid(logits_n)                     (B, 1, S, S)
    y_0        = logit(clip(p, eps, 1 − eps))                 Langevin runs in logit space
    y_{k+1}    = y_k − δ²/2 · ∂U/∂y(y_k, x) (+ δ·ξ_k)         K steps, energy_grad graph
    saliency   = sigmoid(y_K)

and uncertainty maps from the N sample probabilities (``salkit.kernels.entropy``). ``refine``
starts from another model's probability maps instead of the generator's. ``path="whole"`` runs
the ``generator`` graph N times over (the authors' way) and must agree with the split path.

Every buffer of a batch shape is allocated once on the runners' device and bound once
(:class:`_CoopWorkspace`); the Langevin steps ping-pong between two saliency buffers and write
with ``out=`` so no step allocates. On a GPU device the batch is uploaded once and the results
downloaded once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from salkit.kernels.entropy import uncertainty_maps
from salkit.kernels.errors import SalkitError
from salkit.runtime.backends.base import Array, Device, Runner

LOGIT_EPS = 1e-6  # probabilities are clipped to [eps, 1 − eps] before the logit


def sigmoid_into(xp: Any, logits: Array, out: Array) -> None:
    """out = 1 / (1 + exp(−logits)), in place (out may be logits)."""
    xp.negative(logits, out=out)
    xp.exp(out, out=out)
    out += 1.0
    xp.reciprocal(out, out=out)


def logit_into(xp: Any, probs: Array, out: Array, tmp: Array, eps: float = LOGIT_EPS) -> None:
    """out = log(p / (1 − p)) with p clipped to [eps, 1 − eps]; tmp is scratch of the same shape."""
    xp.clip(probs, eps, 1.0 - eps, out=out)
    xp.subtract(1.0, out, out=tmp)
    xp.divide(out, tmp, out=out)
    xp.log(out, out=out)


def langevin_into(y: Array, grad: Array, step: float, out: Array, scaled_noise: Array | None = None) -> None:
    """``out = y − step²/2·grad (+ scaled_noise)`` without temporaries; ``scaled_noise = step·ξ``.

    Bit-identical to ``salkit.kernels.langevin.langevin_step(y, grad, step, ξ)`` (``y + (−c)·g``
    rounds exactly as ``y − c·g``); a test checks it.
    """
    out[...] = grad
    out *= -(0.5 * step * step)
    out += y
    if scaled_noise is not None:
        out += scaled_noise


@dataclasses.dataclass
class CoopRunners:
    encoder: Runner
    latent_decoder: Runner
    energy_grad: Runner
    generator: Runner | None = None  # only for the whole-generator path
    langevin_step: Runner | None = None  # the fused update graph, used on GPU devices


class _CoopWorkspace:
    """All buffers and bindings for one (batch, samples) shape; built once, reused per call."""

    def __init__(self, runners: CoopRunners, device: Device, batch: int, samples: int, size: int, latent_dim: int, path: str) -> None:
        xp, empty = device.xp, device.empty
        rows = samples * batch
        self.x = empty((batch, 3, size, size))
        self.latent = empty((rows, latent_dim))
        self.logits = empty((rows, 1, size, size))
        if path == "split":
            feats = runners.encoder.output_shapes({"image": self.x.shape})
            self.feats = {k: empty(v, runners.encoder._dtype_of(k)) for k, v in feats.items()}
            self.feats_rep = {k: empty((rows, *v[1:]), runners.encoder._dtype_of(k)) for k, v in feats.items()}
            self.encode = runners.encoder.bind({"image": self.x}, self.feats)
            self.decode = runners.latent_decoder.bind({**self.feats_rep, "latent": self.latent}, {"logits": self.logits})
        else:
            if runners.generator is None:
                raise SalkitError("the whole-generator path needs the bundle's 'generator' graph")
            self.x_rep = empty((rows, 3, size, size))
            self.decode = runners.generator.bind({"image": self.x_rep, "latent": self.latent}, {"logits": self.logits})
        self.probs = self.logits  # sigmoid is applied in place: logits are not needed afterwards
        map_shape = (batch, 1, size, size)
        self.y = (empty(map_shape), empty(map_shape))  # ping-pong saliency buffers (logits)
        self.grad = empty(map_shape)
        self.scratch = empty(map_shape)
        self.grad_bind = tuple(runners.energy_grad.bind({"saliency": y, "image": self.x}, {"grad": self.grad}) for y in self.y)
        self.fused = None
        if runners.langevin_step is not None:
            self.noise_step = empty(map_shape)
            xp.multiply(self.noise_step, 0.0, out=self.noise_step)
            self.fused = tuple(
                runners.langevin_step.bind(
                    {"saliency": self.y[i], "image": self.x, "noise": self.noise_step}, {"saliency_next": self.y[1 - i]}
                )
                for i in (0, 1)
            )
        self.noise: Array | None = None  # (K, B, 1, S, S), allocated at first noisy call
        self.shape = (batch, samples)


class CoopLoop:
    """Cooperative predict / refine over one bundle's runners (all on one device)."""

    def __init__(self, runners: CoopRunners, device: Device, *, size: int, latent_dim: int, step_size: float, logit_eps: float = LOGIT_EPS) -> None:
        self.runners, self.device = runners, device
        self.size, self.latent_dim, self.step_size, self.logit_eps = size, latent_dim, float(step_size), logit_eps
        self._workspaces: dict[tuple[int, int, str], _CoopWorkspace] = {}

    def workspace(self, batch: int, samples: int, path: str = "split") -> _CoopWorkspace:
        key = (batch, samples, path)
        if key not in self._workspaces:
            self._workspaces[key] = _CoopWorkspace(self.runners, self.device, batch, samples, self.size, self.latent_dim, path)
        return self._workspaces[key]

    # -- the pieces -------------------------------------------------------------------------
    def _sample_probs(self, ws: _CoopWorkspace, latents: np.ndarray, path: str) -> Array:
        """N sample probability maps, device (N, B, 1, S, S)."""
        xp, (batch, samples) = self.device.xp, ws.shape
        self.device.upload(np.ascontiguousarray(latents.reshape(samples * batch, self.latent_dim)), ws.latent)  # (N,B,d) → (N·B,d)
        if path == "split":
            self.runners.encoder.run(ws.encode)
            for name, feat in ws.feats.items():
                # (B, …) broadcast into (N, B, …): sample-major rows, matching the latents' order
                xp.copyto(ws.feats_rep[name].reshape(samples, *feat.shape), feat[None])
            self.runners.latent_decoder.run(ws.decode)
        else:
            xp.copyto(ws.x_rep.reshape(samples, *ws.x.shape), ws.x[None])  # (N·B,3,S,S) as (N,B,3,S,S)
            self.runners.generator.run(ws.decode)
        sigmoid_into(xp, ws.logits, ws.probs)
        return ws.probs.reshape(samples, batch, 1, self.size, self.size)  # (N·B,1,S,S) → (N,B,1,S,S)

    def _langevin(self, ws: _CoopWorkspace, steps: int, noise: np.ndarray | None) -> Array:
        """K steps from ws.y[0]; returns the buffer holding y_K."""
        if noise is not None:
            if ws.noise is None or ws.noise.shape[0] < steps:
                ws.noise = self.device.empty((steps, *ws.y[0].shape))
            self.device.upload(np.ascontiguousarray(noise, dtype=np.float32), ws.noise[:steps])
            if ws.fused is None:
                ws.noise[:steps] *= np.float32(self.step_size)  # the update adds δ·ξ: scale once, not per step
        current = 0
        for k in range(steps):
            nxt = 1 - current
            step_noise = None if noise is None else ws.noise[k]
            if ws.fused is not None:
                if step_noise is not None:
                    self.device.xp.copyto(ws.noise_step, step_noise)
                self.runners.langevin_step.run(ws.fused[current])
                if step_noise is not None:
                    ws.noise_step[...] = 0.0
            else:
                self.runners.energy_grad.run(ws.grad_bind[current])
                langevin_into(ws.y[current], ws.grad, self.step_size, ws.y[nxt], step_noise)
            current = nxt
        return ws.y[current]

    # -- the two entry points ---------------------------------------------------------------
    def predict(
        self,
        x: np.ndarray,
        latents: np.ndarray,
        *,
        steps: int,
        noise: np.ndarray | None = None,
        uncertainty: bool = True,
        path: str = "split",
    ) -> dict[str, np.ndarray]:
        """x (B,3,S,S) normalised, latents (N,B,d), noise (K,B,1,S,S) or None → host arrays."""
        if path not in ("split", "whole"):
            raise SalkitError(f"path must be 'split' or 'whole', got {path!r}")
        batch, samples = x.shape[0], latents.shape[0]
        if latents.shape != (samples, batch, self.latent_dim):
            raise SalkitError(f"latents must have shape (N, {batch}, {self.latent_dim}), got {latents.shape}")
        ws = self.workspace(batch, samples, path)
        xp = self.device.xp
        self.device.upload(np.ascontiguousarray(x, dtype=np.float32), ws.x)
        probs = self._sample_probs(ws, latents, path)  # (N, B, 1, S, S)
        xp.mean(probs, axis=0, out=ws.scratch)
        logit_into(xp, ws.scratch, ws.y[0], ws.grad, self.logit_eps)
        final = self._langevin(ws, steps, noise)
        sigmoid_into(xp, final, ws.scratch)
        out = {"saliency": ws.scratch}
        if uncertainty:
            out.update(uncertainty_maps(probs))
        self.device.synchronize()
        return {k: np.asarray(self.device.download(v), dtype=np.float32) for k, v in out.items()}

    def refine(self, x: np.ndarray, maps: np.ndarray, *, steps: int, noise: np.ndarray | None = None) -> np.ndarray:
        """x (B,3,S,S), maps (B,1,S,S) probabilities → refined probabilities (B,1,S,S), host."""
        batch = x.shape[0]
        ws = self.workspace(batch, 1, "split")
        xp = self.device.xp
        self.device.upload(np.ascontiguousarray(x, dtype=np.float32), ws.x)
        self.device.upload(np.ascontiguousarray(maps, dtype=np.float32), ws.scratch)
        logit_into(xp, ws.scratch, ws.y[0], ws.grad, self.logit_eps)
        final = self._langevin(ws, steps, noise)
        sigmoid_into(xp, final, ws.scratch)
        self.device.synchronize()
        return np.asarray(self.device.download(ws.scratch), dtype=np.float32)


def check_steps(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise SalkitError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
