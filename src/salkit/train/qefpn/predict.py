"""Reference (torch) predictor for QE-FPN checkpoints: what the runtime's bundles must reproduce.

``predict_tensor`` mirrors the runtime's ``Predictor.predict_tensor`` for the qefpn kind
(docs/architecture.md): input (B, 3, S, S) float32, already normalised; output numpy arrays
``"saliency"`` (B, 1, S, S) probabilities, ``"iterations"`` (B,) solver steps and ``"residual"``
(B,) relative residual ‖f(z) − z‖ / ‖z‖ of the returned state. ``steps=None`` solves to the
model's tolerance; ``steps=N`` runs exactly N Broyden steps (the runtime's fixed-iteration solve,
with the model's memory and tolerance), returning the lowest-residual iterate; ``iterations`` is
then the first step that met the tolerance (N if none did), as in the runtime.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from salkit.base.errors import SalkitError
from salkit.train.engine.checkpoint import build_model, load_checkpoint
from salkit.train.qefpn.solve import SolverConfig, solve_implicit


class QEFPNReferencePredictor:
    def __init__(self, model: torch.nn.Module, solver: str | None = None) -> None:
        self.model = model.eval()
        self.solver = solver or model.solver
        self.image_size = model.image_size

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], solver: str | None = None) -> "QEFPNReferencePredictor":
        return cls(build_model(load_checkpoint(path, expect_kind="qefpn")), solver)

    @torch.no_grad()
    def predict_tensor(self, x: Any, *, steps: int | None = None) -> dict[str, np.ndarray]:
        x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        s = self.image_size
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != (3, s, s):
            raise SalkitError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(x_t.shape)}")
        inj = self.model.inject(x_t)
        if steps is None:
            z, stats = self.model.solve(inj, self.solver)
        else:
            if steps < 1:
                raise SalkitError(f"steps must be >= 1, got {steps}")
            config = SolverConfig(**{**self.model.solver_config.__dict__, "f_max_iter": steps})
            z, stats = solve_implicit(lambda z: self.model.f(z, inj), torch.zeros_like(inj), config, fixed_iterations=True)
        prob = torch.sigmoid(self.model.decode(z))
        return {
            "saliency": prob.numpy().astype(np.float32),
            "iterations": stats["iterations"].numpy().astype(np.int64),
            "residual": stats["residual"].float().numpy(),
        }
