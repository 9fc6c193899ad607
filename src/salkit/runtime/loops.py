"""Cooperative predict and refine over a bundle's runners: ``salkit.kernels.coop`` with runner callables.

The algorithm itself (sample → mean → logit → K Langevin steps → sigmoid, and refine) is
``salkit.kernels.coop``, shared with the Triton model and the torch references. This module
supplies its two callables on the runners' device:

    sample_probs(latents)  encoder once per image, its features repeated into (N·B, …) rows, the
                           latent_decoder once on all N·B rows, sigmoid → (N, B, 1, S, S);
                           ``path="whole"`` runs the ``generator`` graph on N·B rows instead
                           (the authors' way; it agrees with the split path to 1e-5)
    energy_grad(y)         the ``energy_grad`` graph on the batch's B rows; a bundle with the split
                           energy graphs runs ``energy_image`` once per predict / refine (the image's
                           share of U's first convolution, constant over the K steps) and then
                           ``energy_grad_step`` on (y, that share) each step instead

Every buffer of a batch shape is allocated once on the runners' device and bound once
(:class:`_CoopWorkspace`); the algorithm's elementwise steps write into them
(``kernels.coop.BufferOps``), the Langevin iterates ping-pong between two buffers, and no step
allocates. On a GPU device the batch is uploaded once and the results downloaded once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.kernels import coop
from salkit.runtime.backends.base import Array, Device, Runner


@dataclasses.dataclass
class CoopRunners:
    encoder: Runner
    latent_decoder: Runner
    energy_grad: Runner | None = None  # ∂U/∂y from (y, image): bundles without the split energy graphs
    generator: Runner | None = None  # only for the whole-generator path
    # The split energy gradient (both or neither): image → image_term once per predict / refine,
    # then (y, image_term) → ∂U/∂y each Langevin step.
    energy_image: Runner | None = None
    energy_grad_step: Runner | None = None

    def __post_init__(self) -> None:
        if (self.energy_image is None) != (self.energy_grad_step is None):
            raise SalkitError("the split energy gradient needs both energy_image and energy_grad_step")
        if self.energy_grad is None and self.energy_grad_step is None:
            raise SalkitError("the cooperative loop needs energy_grad or energy_image with energy_grad_step")

    @property
    def split_energy(self) -> bool:
        """Whether the energy's constant share is computed once per predict (``energy_image``)."""
        return self.energy_grad_step is not None


class _CoopWorkspace:
    """All buffers, bindings and callables for one (batch, samples, path); built once, reused per call."""

    def __init__(self, runners: CoopRunners, device: Device, batch: int, samples: int, size: int, latent_dim: int, path: str) -> None:
        empty = device.empty
        rows = samples * batch
        self.device, self.runners, self.path, self.shape = device, runners, path, (batch, samples)
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
        self.probs = self.logits  # sigmoid is applied in place: the logits are not needed afterwards
        self.ops = coop.BufferOps(device.xp, empty, (batch, 1, size, size))
        self.grad = empty((batch, 1, size, size))
        # The gradient graph reads whichever ping-pong buffer holds the current iterate: one binding each.
        self.image_bind: Any = None
        if runners.split_energy:
            assert runners.energy_image is not None and runners.energy_grad_step is not None
            shape = runners.energy_image.output_shapes({"image": self.x.shape})["image_term"]
            self.image_term = empty(shape, runners.energy_image._dtype_of("image_term"))
            self.image_bind = runners.energy_image.bind({"image": self.x}, {"image_term": self.image_term})
            self.grad_runner = runners.energy_grad_step
            self.grad_bind = tuple(self.grad_runner.bind({"saliency": y, "image_term": self.image_term}, {"grad": self.grad})
                                   for y in self.ops.y)
        else:
            assert runners.energy_grad is not None
            self.grad_runner = runners.energy_grad
            self.grad_bind = tuple(self.grad_runner.bind({"saliency": y, "image": self.x}, {"grad": self.grad}) for y in self.ops.y)
        self.noise: Array | None = None  # (K, B, 1, S, S), allocated at the first noisy call

    def sample_probs(self, latents: np.ndarray) -> Array:
        """Host latents (N, B, d) → device probabilities (N, B, 1, S, S) (a view of ``self.probs``)."""
        device, xp, (batch, samples) = self.device, self.device.xp, self.shape
        device.upload(np.ascontiguousarray(latents.reshape(samples * batch, -1), dtype=np.float32), self.latent)  # (N,B,d) → (N·B,d)
        if self.path == "split":
            self.runners.encoder.run(self.encode)
            for name, feat in self.feats.items():
                # (B, …) broadcast into (N·B, …) viewed as (N, B, …): sample-major rows, the latents' order
                xp.copyto(self.feats_rep[name].reshape(samples, *feat.shape), feat[None])  # (1, B, …) → (N, B, …)
            self.runners.latent_decoder.run(self.decode)
        else:
            xp.copyto(self.x_rep.reshape(samples, *self.x.shape), self.x[None])  # (N·B,3,S,S) viewed as (N,B,3,S,S)
            self.runners.generator.run(self.decode)
        coop.sigmoid_into(xp, self.logits, self.probs)
        return self.probs.reshape(samples, batch, *self.probs.shape[1:])  # (N·B,1,S,S) → (N,B,1,S,S)

    def prepare_energy(self) -> None:
        """Once per predict / refine, after the images are uploaded: the energy's constant share
        (``energy_image``: X's part of U's first convolution) for every step to read. Nothing to
        do for a bundle without the split graphs."""
        if self.image_bind is not None:
            assert self.runners.energy_image is not None
            self.runners.energy_image.run(self.image_bind)

    def energy_grad(self, y: Array) -> Array:
        """∂U/∂y (B, 1, S, S) for the iterate y, one of ``ops.y``."""
        self.grad_runner.run(self.grad_bind[0 if y is self.ops.y[0] else 1])
        return self.grad

    def upload_noise(self, noise: np.ndarray | None, steps: int) -> Array | None:
        """Host noise (K, B, 1, S, S) → the device buffer (a view of its first K steps)."""
        if noise is None:
            return None
        if self.noise is None or self.noise.shape[0] < steps:
            self.noise = self.device.empty((steps, *self.grad.shape))
        self.device.upload(np.ascontiguousarray(noise, dtype=np.float32), self.noise[:steps])
        return self.noise[:steps]


class CoopLoop:
    """Cooperative predict / refine over one bundle's runners (all on one device)."""

    def __init__(self, runners: CoopRunners, device: Device, *, size: int, latent_dim: int, step_size: float,
                 logit_eps: float = coop.LOGIT_EPS) -> None:
        self.runners, self.device = runners, device
        self.size, self.latent_dim, self.step_size, self.logit_eps = size, latent_dim, float(step_size), logit_eps
        self._workspaces: dict[tuple[int, int, str], _CoopWorkspace] = {}

    def workspace(self, batch: int, samples: int, path: str = "split") -> _CoopWorkspace:
        key = (batch, samples, path)
        if key not in self._workspaces:
            self._workspaces[key] = _CoopWorkspace(self.runners, self.device, batch, samples, self.size, self.latent_dim, path)
        return self._workspaces[key]

    def _download(self, arrays: dict[str, Array]) -> dict[str, np.ndarray]:
        self.device.synchronize()
        return {k: np.asarray(self.device.download(v), dtype=np.float32) for k, v in arrays.items()}

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
        """x (B,3,S,S) normalised, latents (N,B,d), noise (K,B,1,S,S) or None → host arrays:
        "saliency" and, with ``uncertainty``, "predictive", "aleatoric", "epistemic" (B,1,S,S)."""
        if path not in ("split", "whole"):
            raise SalkitError(f"path must be 'split' or 'whole', got {path!r}")
        batch, samples = x.shape[0], latents.shape[0]
        if latents.shape != (samples, batch, self.latent_dim):
            raise SalkitError(f"latents must have shape (N, {batch}, {self.latent_dim}), got {latents.shape}")
        ws = self.workspace(batch, samples, path)
        self.device.upload(np.ascontiguousarray(x, dtype=np.float32), ws.x)
        if steps:
            ws.prepare_energy()
        out = coop.predict(ws.sample_probs, latents, ws.energy_grad, steps=steps, step_size=self.step_size,
                           noise=ws.upload_noise(noise, steps), eps=self.logit_eps, uncertainty=uncertainty, ops=ws.ops)
        del out["generator"]
        return self._download(out)

    def refine(self, x: np.ndarray, maps: np.ndarray, *, steps: int, noise: np.ndarray | None = None) -> np.ndarray:
        """x (B,3,S,S), maps (B,1,S,S) probabilities → refined probabilities (B,1,S,S), host."""
        ws = self.workspace(x.shape[0], 1, "split")
        self.device.upload(np.ascontiguousarray(x, dtype=np.float32), ws.x)
        self.device.upload(np.ascontiguousarray(maps, dtype=np.float32), ws.ops.mean_map)
        if steps:
            ws.prepare_energy()
        refined = coop.refine(ws.ops.mean_map, ws.energy_grad, steps=steps, step_size=self.step_size,
                              noise=ws.upload_noise(noise, steps), eps=self.logit_eps, ops=ws.ops)
        return self._download({"saliency": refined})["saliency"]


def check_steps(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise SalkitError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
