"""Torch reference predictor for the cooperative model — the numbers the runtime must reproduce.

The algorithm is ``salkit.kernels.coop`` (the function ``sal-runtime`` and the Triton model run);
this module gives it torch callables on the checkpoint's modules::

    sample_probs(latents)  split: encode(x) once, decode(feats, h_n) for all N samples in one
                           batched pass (h never reaches the encoder); whole: the generator N
                           times over (the authors' way; equal to the split path to float rounding)
    energy_grad(y)         ∂U(y, x)/∂y by autograd

``predict_tensor`` returns Ỹ ("saliency"), Ŷ ("generator", the mean sample probability before the
descent) and the uncertainty maps of the N samples. The model runs in eval mode (batch-norm
running statistics), as the exported graphs do.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch

from salkit.base.errors import SalkitError
from salkit.kernels import coop
from salkit.train.coop.langevin import energy_gradient
from salkit.train.engine.checkpoint import build_model, load_checkpoint


def load_coop(path: str | Path) -> torch.nn.Module:
    return build_model(load_checkpoint(path, expect_kind="coop")).eval()


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def sample_probs_fn(model: torch.nn.Module, x: torch.Tensor, path: str = "split") -> Callable[[torch.Tensor], torch.Tensor]:
    """latents (N,B,d) ↦ sample probabilities (N,B,1,S,S), without gradients."""
    generator = model.generator
    if path not in ("split", "whole"):
        raise SalkitError(f"path must be 'split' or 'whole', got {path!r}")

    @torch.no_grad()
    def sample_probs(latents: torch.Tensor) -> torch.Tensor:
        if path == "split":
            logits = generator.decode_samples(generator.encode(x), latents)
        else:
            logits = torch.stack([generator(x, latents[n]) for n in range(latents.shape[0])])
        return torch.sigmoid(logits)

    return sample_probs


def _check_noise(noise: torch.Tensor | None, steps: int, x: torch.Tensor) -> None:
    want = (steps, x.shape[0], 1, *x.shape[2:])
    if noise is not None and tuple(noise.shape) != want:
        raise SalkitError(f"noise must have shape {want}, got {tuple(noise.shape)}")


def predict_tensor(
    model: torch.nn.Module,
    x: torch.Tensor,
    latents: torch.Tensor,
    steps: int,
    step_size: float,
    noise: torch.Tensor | None = None,
    uncertainty: bool = True,
    path: str = "split",
) -> dict[str, torch.Tensor]:
    """Keys: "saliency" (Ỹ) and "generator" (Ŷ) probabilities (B,1,S,S); with ``uncertainty`` also
    "predictive", "aleatoric", "epistemic" (B,1,S,S). ``noise`` (K,B,1,S,S) or None (noise-free)."""
    b = x.shape[0]
    if latents.ndim != 3 or latents.shape[1] != b or latents.shape[2] != model.generator.latent_dim:
        raise SalkitError(f"latents must be (N, {b}, {model.generator.latent_dim}), got {tuple(latents.shape)}")
    _check_noise(noise, steps, x)
    with _eval_mode(model):
        return coop.predict(sample_probs_fn(model, x, path), latents, energy_gradient(model.energy, x), steps=steps,
                            step_size=step_size, noise=noise, uncertainty=uncertainty)


def refine_tensor(
    model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, steps: int, step_size: float,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Refine probability maps (B,1,S,S) by K Langevin steps on U; returns probabilities."""
    _check_noise(noise, steps, x)
    with _eval_mode(model):
        return coop.refine(maps, energy_gradient(model.energy, x), steps=steps, step_size=step_size, noise=noise)


def predict(
    model: torch.nn.Module, x: torch.Tensor, *, samples: int = 10, steps: int = 5, step_size: float = 0.4,
    seed: int | None = None, uncertainty: bool = True,
) -> dict[str, torch.Tensor]:
    """``predict_tensor`` with latents ~ N(0, I) drawn by sal-runtime's seed convention
    (``kernels.coop.random_inputs``): the same seed gives the runtime's latents."""
    latents, _ = coop.random_inputs(seed, samples=samples, batch=x.shape[0], latent_dim=model.generator.latent_dim,
                                    steps=steps, size=x.shape[-1], noise=False)  # (N,B,d)
    return predict_tensor(model, x, torch.from_numpy(latents).to(x.device), steps, step_size, uncertainty=uncertainty)
