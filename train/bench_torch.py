"""The torch eager baseline of ``sal-runtime bench --compare-torch`` (imports torch when called).

Cooperative predict the authors' way: the **whole generator once per latent sample** (N passes,
encoder included each time), the mean probability, then K Langevin steps whose energy gradient
comes from autograd — what their test script and the paper's inference do, without this
project's shared-encoder split. The algorithm is ``salkit.kernels.coop.predict`` (the runtime's),
with those callables. QE-FPN: the model's own solve with the runtime's fixed number of Broyden
iterations, under ``no_grad``. It lives in salkit.train because it needs torch; the runtime imports
it only for --compare-torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from salkit.kernels.errors import SalkitError


def load_torch_model(ckpt: str | Path, threads: int | None) -> Any:
    try:
        import torch

        from salkit.train.engine.checkpoint import build_model, load_checkpoint
    except ImportError as err:
        raise SalkitError(f"--compare-torch needs PyTorch and salkit[train] ({err})") from None
    if threads:
        torch.set_num_threads(threads)
    return build_model(load_checkpoint(ckpt)).eval()


def coop_eager(model: Any, samples: int, steps: int, step_size: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A callable (x (B,3,S,S), latents (N,B,d)) → saliency (B,1,S,S), the authors' way."""
    import torch

    from salkit.kernels import coop
    from salkit.train.coop_langevin import energy_gradient
    from salkit.train.coop_predictor import sample_probs_fn

    def run(x_np: np.ndarray, latents: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(x_np)
        out = coop.predict(sample_probs_fn(model, x, "whole"), torch.from_numpy(latents[:samples]), energy_gradient(model.energy, x),
                           steps=steps, step_size=step_size, uncertainty=False)
        return out["saliency"].numpy()

    return run


def qefpn_eager(model: Any, iterations: int) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """The model's own inject → Broyden solve → decode under ``no_grad``, with exactly
    ``iterations`` Broyden steps like the runtime's solve: with the model's early stop the torch
    side's work would depend on how soon an image's solve meets the tolerance."""
    import dataclasses

    import torch

    model.solver_config = dataclasses.replace(model.solver_config, f_max_iter=iterations)

    def run(x_np: np.ndarray, _latents: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            z, _ = model.solve(model.inject(torch.from_numpy(x_np)), fixed_iterations=True)
            return torch.sigmoid(model.decode(z)).numpy()

    return run
