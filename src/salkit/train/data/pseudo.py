"""A second round of weak supervision: the scribble model's own confident maps as wider scribbles.

Scribble boosting (Zhang et al. 2020 grow their strokes from a first model's maps): after a
first training on strokes alone, each photo's map labels the pixels it is sure of, and the
strokes keep the last word where they were drawn:

- foreground (1) where the map ≥ ``high``, background (2) where it ≤ ``low``, unknown (0) between;
- every stroke pixel keeps its stroke's label, whatever the map says.

No ground-truth mask is read: the labels come from the strokes and the model alone, so the
second round stays weakly supervised. ``write_pseudo_scribbles`` writes an S-DUTS-layout folder
(``scribble/<id>.png`` plus links to the stroke folder's ``img``, ``gt`` and split) that
``train-coop --scribble`` reads like the strokes'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from salkit.base.atomic import atomic_directory
from salkit.base.errors import SalkitError
from salkit.base.layout import read_scribble, read_split, split_samples
from salkit.train.data.scribbles import SCRIBBLE_BG, SCRIBBLE_FG


def pseudo_scribble(saliency: np.ndarray, strokes: np.ndarray, low: float, high: float) -> np.ndarray:
    """A map in [0, 1] and its photo's strokes (uint8 {0, 1, 2}, same shape) → the widened scribble."""
    if not 0.0 <= low < high <= 1.0:
        raise SalkitError(f"pseudo-label thresholds need 0 ≤ low < high ≤ 1, got low {low}, high {high}")
    if saliency.shape != strokes.shape:
        raise SalkitError(f"map of shape {saliency.shape} for strokes of shape {strokes.shape}")
    out = np.zeros(strokes.shape, dtype=np.uint8)
    out[saliency >= high] = SCRIBBLE_FG
    out[saliency <= low] = SCRIBBLE_BG
    drawn = strokes != 0
    out[drawn] = strokes[drawn]
    return out


def write_pseudo_scribbles(
    strokes: str | os.PathLike[str], split: str | os.PathLike[str], maps: Callable[[Sequence[np.ndarray]], list[np.ndarray]],
    out: str | os.PathLike[str], *, low: float, high: float, force: bool = False,
) -> dict[str, float]:
    """Widened scribbles for the ids of ``split`` of the stroke folder ``strokes`` into ``out`` (atomically).

    ``maps``: photos (uint8 (h, w, 3)) → maps in [0, 1] at each photo's own size (the first model).
    Returns the share of pixels labelled foreground and background, over all photos.
    """
    samples = split_samples(strokes, split, scribbles=True)
    split_file, _ = read_split(strokes, split)
    from salkit.base.images import decode_image

    fg = bg = total = 0
    root = Path(strokes)
    with atomic_directory(out, force=force) as tmp:
        (tmp / "scribble").mkdir()
        for sample in samples:
            assert sample.scribble is not None
            drawn = read_scribble(sample.scribble)
            (saliency,) = maps([decode_image(sample.image)])
            widened = pseudo_scribble(np.asarray(saliency, dtype=np.float32), drawn, low, high)
            Image.fromarray(widened).save(tmp / "scribble" / f"{sample.stem}.png", format="PNG")
            fg += int((widened == SCRIBBLE_FG).sum())
            bg += int((widened == SCRIBBLE_BG).sum())
            total += widened.size
        for sub in ("img", "gt"):
            if (root / sub).exists():
                os.symlink((root / sub).resolve(), tmp / sub)
        os.symlink(split_file.resolve(), tmp / split_file.name)
    return {"images": float(len(samples)), "foreground_fraction": fg / max(total, 1),
            "background_fraction": bg / max(total, 1)}
