"""Scribbles derived from ground-truth masks, for weak supervision on datasets that have none.

For one mask (binarised at > 128, ``layout.binarise_mask``) of shorter side m:

- stroke width w = max(1, round(m / 128)) pixels (3 px on a 375-pixel PASCAL-S side);
- background: 2–4 strokes, each a smooth random walk of m·U(0.4, 0.8) pixels on the background
  eroded by max(2, m // 24) pixels (so strokes keep off object borders, as annotators do);
- foreground: one stroke per connected object part (8-connected) covering at least 0.2% of the
  image, on the part eroded by w + 1 (or by 1 when that leaves nothing), of √area·U(1, 2) pixels;
  smaller specks stay unknown;
- S-DUTS values: 1 = foreground, 2 = background, 0 = unknown everywhere else.

Strokes never leave their region, so every foreground label lies inside the mask and every
background label outside it. The strokes of an image depend only on (seed, image id): the
generator is ``numpy.random.default_rng([seed, crc32(id)])``, so the same seed gives the same
files on every machine, whatever the order or subset of ids.

``write_scribbles`` writes ``<out>/scribble/<id>.png`` for the ids of a split and links the
source's image and mask folders and split file beside them (symbolic links, nothing is copied),
giving an S-DUTS-layout folder that ``train-coop --scribble --data <out> --split <name>`` reads.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
from PIL import Image

from salkit.base.atomic import atomic_directory
from salkit.base.layout import read_mask_bool, read_split, split_samples
from salkit.train.data.strokes import background_region, part_stroke, strokes

SCRIBBLE_FG, SCRIBBLE_BG = 1, 2
MIN_PART_FRACTION = 0.002  # object parts smaller than this share of the image get no stroke


def scribble_rng(seed: int, stem: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(stem.encode("utf-8"))])


def _parts(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected foreground parts large enough for a stroke, largest first."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    areas = np.bincount(labels.ravel())[1:]  # (count,) pixels per part
    keep = [i + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= MIN_PART_FRACTION * mask.size]
    return [labels == i for i in keep]


def scribble_from_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bool (H, W) mask → uint8 (H, W) scribble in {0, 1, 2} (see the module docstring)."""
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a 2-D bool array, got {mask.dtype} {mask.shape}")
    side = min(mask.shape)
    width = max(1, int(round(side / 128)))
    scribble = np.zeros(mask.shape, dtype=np.uint8)
    background = background_region(mask, side)
    if background.any():
        bg = strokes(rng, background, int(rng.integers(2, 5)), side * rng.uniform(0.4, 0.8), width)
        scribble[bg] = SCRIBBLE_BG
    for part in _parts(mask):
        scribble[part_stroke(rng, part, width)] = SCRIBBLE_FG
    return scribble


def write_scribbles(
    data: str | os.PathLike[str], split: str | os.PathLike[str], out: str | os.PathLike[str], *, seed: int = 0,
    force: bool = False,
) -> dict[str, float]:
    """Scribbles for the ids of ``split`` of ``data`` into ``out`` (atomically); returns label statistics."""
    samples = split_samples(data, split)  # SalkitError: missing folders, ids without files, sizes
    split_file, _ = read_split(data, split)
    fg_pixels = bg_pixels = total = 0
    with atomic_directory(out, force=force) as tmp:
        (tmp / "scribble").mkdir()
        for sample in samples:
            assert sample.mask is not None
            scribble = scribble_from_mask(read_mask_bool(sample.mask), scribble_rng(seed, sample.stem))
            Image.fromarray(scribble).save(tmp / "scribble" / f"{sample.stem}.png", format="PNG")
            fg_pixels += int((scribble == SCRIBBLE_FG).sum())
            bg_pixels += int((scribble == SCRIBBLE_BG).sum())
            total += scribble.size
        first = samples[0]
        assert first.mask is not None
        os.symlink(first.image.parent.resolve(), tmp / "img")
        os.symlink(first.mask.parent.resolve(), tmp / "gt")
        os.symlink(split_file.resolve(), tmp / f"{split_file.stem}.txt")
    return {"images": float(len(samples)), "foreground_fraction": fg_pixels / max(total, 1),
            "background_fraction": bg_pixels / max(total, 1)}


def link_split(data: str | os.PathLike[str], split: str | os.PathLike[str], out: str | os.PathLike[str], *,
               force: bool = False) -> int:
    """``out/img`` and ``out/gt`` holding links to the files of one split, for tools that read folders
    (``sal-runtime predict``, ``eval``); returns the number of ids. Nothing is copied."""
    samples = split_samples(data, split)
    with atomic_directory(out, force=force) as tmp:
        for sub in ("img", "gt"):
            (tmp / sub).mkdir()
        for sample in samples:
            assert sample.mask is not None
            os.symlink(sample.image.resolve(), tmp / "img" / sample.image.name)
            os.symlink(sample.mask.resolve(), tmp / "gt" / sample.mask.name)
    return len(samples)
