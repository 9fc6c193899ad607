"""Pick the array library of an argument without importing torch for numpy callers.

The kernels are written once against a tiny common vocabulary (``log``, ``clip``, ``mean``)
that numpy and torch both provide; this returns the module that owns ``x``.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np


def namespace_of(x: Any) -> ModuleType:
    """numpy for numpy arrays and scalars, torch for torch tensors (imported only if already loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return np
