"""Real images for export: validation inputs and int8 calibration, preprocessed like the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from salkit.kernels.errors import SalkitError


def image_files(directory: str | Path) -> list[Path]:
    """Images of ``directory``, or of its ``img``/``images`` sub-folder (a dataset root)."""
    from salkit.base.images import list_images

    root = Path(directory)
    for sub in ("img", "images", "Imgs"):
        if (root / sub).is_dir():
            return list_images(root / sub, what="calibration image folder")
    return list_images(root, what="calibration image folder")


def load_images(directory: str | Path, size: int, mean: Sequence[float], std: Sequence[float],
                limit: int) -> torch.Tensor:
    """Up to ``limit`` images as a normalised ``(N, 3, S, S)`` float32 batch."""
    from salkit.base.images import decode_image, preprocess

    files = image_files(directory)[:limit]
    if not files:
        raise SalkitError(f"no images in {directory}")
    batch = preprocess([decode_image(f) for f in files], size, mean, std)
    return torch.from_numpy(np.ascontiguousarray(batch))
