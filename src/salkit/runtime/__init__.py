"""Torch-free runtime: bundles, backends, Langevin/Broyden loops, Python API, server.

Nothing here imports torch (tests/test_packaging.py enforces it). ``Predictor`` and
``Prediction`` are exported lazily so ``import salkit.runtime`` stays light (no onnxruntime).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Prediction", "Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Prediction":
        from salkit.runtime.frontend import Prediction

        return Prediction
    if name == "Predictor":
        from salkit.runtime.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'salkit.runtime' has no attribute {name!r}")
