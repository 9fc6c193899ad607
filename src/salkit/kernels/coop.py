"""Cooperative predict and refine, written once for numpy arrays, torch tensors and device arrays.

For B images, N latent samples ``latents`` (N, B, d) and K Langevin steps of size δ::

    p_n      = sample_probs(latents)              (N, B, 1, S, S)  the generator's sample probabilities
    p        = mean_n p_n                         (B, 1, S, S)
    y_0      = logit(clip(p, eps, 1 − eps))       the descent runs in logit space
    y_{k+1}  = y_k − δ²/2 · energy_grad(y_k) (+ δ·ξ_k)      K steps (``langevin_chain``)
    saliency = sigmoid(y_K)

plus the uncertainty maps of the N sample probabilities (``salkit.kernels.entropy``) and
``generator`` = p. The samples are averaged **before** the descent: one chain per image, so
``energy_grad`` runs on B rows, not N·B. ``refine`` starts the same descent from given
probability maps.

The callers (``runtime/loops.py`` over ONNX Runtime / TensorRT runners, the Triton model over
BLS calls, the torch reference and the torch bench baseline over modules and autograd) supply:

- ``sample_probs(latents) -> (N, B, 1, S, S)`` probabilities;
- ``energy_grad(y) -> (B, 1, S, S)``, ∂U/∂y at logits y for the batch's images;
- ``ops``: the elementwise arithmetic. ``ARRAY_OPS`` (default) allocates results in the
  arrays' own library; ``BufferOps`` writes every result into buffers allocated once, so a
  runtime call allocates nothing per step. Both give bit-identical results.

Random inputs (``random_inputs``), the one convention of ``sal-runtime`` and the Triton model:
``numpy.random.default_rng(seed)`` draws the latents (N, B, d) as float32 standard normals first,
then, when noise is on, the Langevin noise (K, B, 1, S, S) the same way. Same seed, same inputs.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from salkit.kernels._namespace import namespace_of
from salkit.kernels.entropy import uncertainty_maps, uncertainty_maps_into
from salkit.kernels.langevin import langevin_chain, langevin_step

Array = Any  # numpy.ndarray, torch.Tensor, or a device array with numpy's interface (cupy)

LOGIT_EPS = 1e-6  # probabilities are clipped to [eps, 1 − eps] before the logit


def sigmoid_into(xp: Any, logits: Array, out: Array) -> Array:
    """out = 1 / (1 + exp(−logits)) without temporaries (out may be logits); returns out."""
    xp.negative(logits, out=out)
    xp.exp(out, out=out)
    out += 1.0
    xp.reciprocal(out, out=out)
    return out


class ArrayOps:
    """The algorithm's elementwise steps, each returning a new array of its input's library."""

    @staticmethod
    def mean(probs: Array) -> Array:
        return namespace_of(probs).mean(probs, 0)  # (N, B, 1, S, S) -> (B, 1, S, S)

    @staticmethod
    def logit(p: Array, eps: float) -> Array:
        xp = namespace_of(p)
        q = xp.clip(p, eps, 1.0 - eps)
        return xp.log(q / (1.0 - q))

    step = staticmethod(langevin_step)

    @staticmethod
    def sigmoid(y: Array) -> Array:
        return 1.0 / (1.0 + namespace_of(y).exp(-y))

    uncertainty = staticmethod(uncertainty_maps)


ARRAY_OPS = ArrayOps()


class BufferOps:
    """The same steps writing into buffers of one map shape (B, 1, S, S), allocated once.

    ``xp`` is numpy, cupy or torch (all three take ``out=``); ``empty(shape)`` allocates a buffer
    where the data lives. The iterates ping-pong between ``y[0]`` and ``y[1]`` (``logit`` writes
    ``y[0]``; ``step`` writes the one its input is not), so a graph computing ∂U/∂y is bound once
    to each. ``mean`` writes ``mean_map``, ``sigmoid`` writes ``out``: results stay valid until the
    next call on the same ops. ``uncertainty`` writes three more maps, with a (N, B, 1, S, S)
    buffer allocated at its first call.
    """

    def __init__(self, xp: Any, empty: Callable[[tuple[int, ...]], Array], shape: tuple[int, ...]) -> None:
        self.xp, self._empty = xp, empty
        self.y = (empty(shape), empty(shape))
        self.mean_map = empty(shape)
        self.out = empty(shape)
        self._tmp = empty(shape)
        self._uncertainty: dict[str, Array] = {}
        self._entropies: Array | None = None
        self._tmp2 = empty(shape)

    def mean(self, probs: Array) -> Array:
        self.xp.mean(probs, 0, out=self.mean_map)  # (N, B, 1, S, S) -> (B, 1, S, S)
        return self.mean_map

    def logit(self, p: Array, eps: float) -> Array:
        xp, y, tmp = self.xp, self.y[0], self._tmp
        xp.clip(p, eps, 1.0 - eps, out=y)
        xp.negative(y, out=tmp)
        tmp += 1.0  # 1 − q, exactly as ArrayOps rounds it
        xp.divide(y, tmp, out=y)
        xp.log(y, out=y)
        return y

    def step(self, y: Array, grad: Array, step: float, noise: Array | None = None) -> Array:
        """``langevin_step`` into the other ping-pong buffer, bit-identical to it
        (``y + (−c)·g`` rounds exactly as ``y − c·g``; ``step·ξ`` is formed in y's precision)."""
        out = self.y[1] if y is self.y[0] else self.y[0]
        out[...] = grad
        out *= -(0.5 * step * step)
        out += y
        if noise is not None:
            self.xp.multiply(noise, step, out=self._tmp)
            out += self._tmp
        return out

    def sigmoid(self, y: Array) -> Array:
        return sigmoid_into(self.xp, y, self.out)

    def uncertainty(self, probs: Array) -> dict[str, Array]:
        """``uncertainty_maps(probs)`` bit for bit, in buffers (``kernels.entropy.uncertainty_maps_into``)."""
        if self._entropies is None or tuple(self._entropies.shape) != tuple(probs.shape):
            self._entropies = self._empty(tuple(probs.shape))
            self._uncertainty = {k: self._empty(tuple(self.out.shape)) for k in ("predictive", "aleatoric", "epistemic")}
        return dict(uncertainty_maps_into(self.xp, probs, self._uncertainty, (self._entropies, self._tmp, self._tmp2)))


def refine(maps: Array, energy_grad: Callable[[Array], Array], *, steps: int, step_size: float, noise: Any = None,
           eps: float = LOGIT_EPS, ops: Any = ARRAY_OPS) -> Array:
    """Probability maps (B, 1, S, S) → logit → K Langevin steps → probabilities (B, 1, S, S).

    ``noise``: None (the noise-free descent of prediction time), ``(K, B, 1, S, S)`` standard
    normals, or a callable ``k -> ξ_k`` (see ``langevin_chain``).
    """
    y = ops.logit(maps, eps)  # (B, 1, S, S) logits
    y = langevin_chain(energy_grad, y, steps, step_size, noise, update=ops.step)
    return ops.sigmoid(y)


def predict(sample_probs: Callable[[Array], Array], latents: Array, energy_grad: Callable[[Array], Array], *, steps: int,
            step_size: float, noise: Any = None, eps: float = LOGIT_EPS, uncertainty: bool = True,
            ops: Any = ARRAY_OPS) -> dict[str, Array]:
    """Keys: "saliency" (B, 1, S, S), "generator" (the sample mean, B, 1, S, S) and, with
    ``uncertainty``, "predictive", "aleatoric", "epistemic" (B, 1, S, S) in nats."""
    probs = sample_probs(latents)  # (N, B, 1, S, S)
    mean = ops.mean(probs)  # (B, 1, S, S)
    out = {"generator": mean}
    out["saliency"] = refine(mean, energy_grad, steps=steps, step_size=step_size, noise=noise, eps=eps, ops=ops)
    if uncertainty:
        out.update(ops.uncertainty(probs))
    return out


def random_inputs(
    seed: int | None, *, samples: int, batch: int, latent_dim: int, steps: int, size: int, noise: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The seed convention: latents (N, B, d), then noise (K, B, 1, S, S) or None, float32."""
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((samples, batch, latent_dim), dtype=np.float32)
    kicks = rng.standard_normal((steps, batch, 1, size, size), dtype=np.float32) if noise else None
    return latents, kicks
