"""Dataset folder layouts: DUTS (image + mask pairs), S-DUTS (image + scribble) and plain folders.

A dataset root holds sub-folders found by name (first match wins):

- images: ``img``, ``image``, ``images``, ``Imgs``, ``DUTS-TR-Image``, ``DUTS-TE-Image``
- masks: ``gt``, ``GT``, ``mask``, ``masks``, ``DUTS-TR-Mask``, ``DUTS-TE-Mask``
- scribbles: ``scribble``, ``scribbles`` (S-DUTS values: 1 = foreground, 2 = background, 0 = unknown)

Files pair by stem (``x.jpg`` ↔ ``x.png``); unmatched files are listed in the error. Nothing here
needs torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from salkit.kernels.errors import SalkitError
from salkit.base.images import decode_gray, decode_image, format_paths, list_images, pair_by_stem

IMAGE_DIRS = ("img", "image", "images", "Imgs", "DUTS-TR-Image", "DUTS-TE-Image")
MASK_DIRS = ("gt", "GT", "mask", "masks", "DUTS-TR-Mask", "DUTS-TE-Mask")
SCRIBBLE_DIRS = ("scribble", "scribbles")
SCRIBBLE_VALUES = frozenset({0, 1, 2})


@dataclass(frozen=True)
class Sample:
    stem: str
    image: Path
    mask: Path | None = None
    scribble: Path | None = None


def find_subdir(root: Path, names: tuple[str, ...], what: str, *, required: bool = True) -> Path | None:
    for name in names:
        candidate = root / name
        if candidate.is_dir():
            return candidate
    if required:
        raise SalkitError(f"dataset {root} has no {what} folder (looked for {', '.join(names)})")
    return None


def _root(path: str | os.PathLike[str]) -> Path:
    root = Path(path)
    if not root.exists():
        raise SalkitError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise SalkitError(f"dataset folder {root} is not a directory")
    return root


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError):
        raise SalkitError(f"cannot read image {path}: not an image file, or corrupt") from None
    return height, width


def _check_sizes(samples: list[Sample]) -> None:
    mismatched = []
    for sample in samples:
        reference = image_size(sample.image)
        for other in (sample.mask, sample.scribble):
            if other is not None and image_size(other) != reference:
                mismatched.append(f"{other} is {image_size(other)} but {sample.image} is {reference}")
    if mismatched:
        raise SalkitError(f"image and label sizes differ (H, W): {format_paths(mismatched)}")


def duts_samples(root: str | os.PathLike[str], *, check_sizes: bool = True) -> list[Sample]:
    """Image/mask pairs of a DUTS-style dataset (``img/`` + ``gt/``), sorted by stem."""
    base = _root(root)
    images = find_subdir(base, IMAGE_DIRS, "image")
    masks = find_subdir(base, MASK_DIRS, "mask")
    pairs = pair_by_stem(images, masks, what_a="image folder", what_b="mask folder")
    samples = [Sample(stem=img.stem, image=img, mask=mask) for img, mask in pairs]
    if check_sizes:
        _check_sizes(samples)
    return samples


def scribble_samples(root: str | os.PathLike[str], *, check_sizes: bool = True) -> list[Sample]:
    """Image/scribble pairs of an S-DUTS-style dataset (``img/`` + ``scribble/``), with masks if present.

    When a mask folder exists its files must pair with the images too (useful for evaluation).
    """
    base = _root(root)
    images = find_subdir(base, IMAGE_DIRS, "image")
    scribbles = find_subdir(base, SCRIBBLE_DIRS, "scribble")
    pairs = pair_by_stem(images, scribbles, what_a="image folder", what_b="scribble folder")
    masks_dir = find_subdir(base, MASK_DIRS, "mask", required=False)
    masks = {}
    if masks_dir is not None:
        masks = {img.stem: mask for img, mask in pair_by_stem(images, masks_dir, what_a="image folder", what_b="mask folder")}
    samples = [Sample(stem=img.stem, image=img, scribble=scr, mask=masks.get(img.stem)) for img, scr in pairs]
    if check_sizes:
        _check_sizes(samples)
    return samples


def image_folder(path: str | os.PathLike[str]) -> list[Path]:
    """The images of a plain folder (for prediction), sorted."""
    return list_images(path, what="image folder")


def read_scribble(path: Path) -> np.ndarray:
    """An S-DUTS scribble as uint8 (H, W) with values in {0, 1, 2}; other values are a user error."""
    values = decode_gray(path, palette_indices=True)
    found = set(np.unique(values).tolist())
    if not found <= SCRIBBLE_VALUES:
        raise SalkitError(
            f"scribble {path} holds values {sorted(found - SCRIBBLE_VALUES)[:8]}; "
            "S-DUTS scribbles use 0 = unknown, 1 = foreground, 2 = background"
        )
    return values


def check_dataset(root: str | os.PathLike[str]) -> dict[str, object]:
    """Validate a dataset tree fully (decodes every file); returns counts, raises on the first problem.

    Checks pairing and sizes, that masks are binary (0/255, or 0/1), that scribbles use {0, 1, 2},
    and, where both exist, that foreground scribbles lie inside the mask and background ones outside.
    """
    base = _root(root)
    has_masks = find_subdir(base, MASK_DIRS, "mask", required=False) is not None
    has_scribbles = find_subdir(base, SCRIBBLE_DIRS, "scribble", required=False) is not None
    if not has_masks and not has_scribbles:
        raise SalkitError(f"dataset {base} has neither a mask folder ({', '.join(MASK_DIRS)}) nor a scribble folder ({', '.join(SCRIBBLE_DIRS)})")
    samples = scribble_samples(base) if has_scribbles else duts_samples(base)
    soft_masks: list[Path] = []
    scribble_pixels = 0
    total_pixels = 0
    for sample in samples:
        decode_image(sample.image)
        mask = None
        if sample.mask is not None:
            mask_values = decode_gray(sample.mask)
            levels = set(np.unique(mask_values).tolist())
            if not (levels <= {0, 255} or levels <= {0, 1}):
                soft_masks.append(sample.mask)
            mask = mask_values > (128 if mask_values.max(initial=0) > 1 else 0)
        if sample.scribble is not None:
            scribble = read_scribble(sample.scribble)
            scribble_pixels += int(np.count_nonzero(scribble))
            total_pixels += scribble.size
            if mask is not None:
                if (scribble == 1)[~mask].any() or (scribble == 2)[mask].any():
                    raise SalkitError(f"scribble {sample.scribble} disagrees with mask {sample.mask}: strokes on the wrong side")
    report: dict[str, object] = {
        "root": str(base),
        "samples": len(samples),
        "masks": has_masks,
        "scribbles": has_scribbles,
        "non_binary_masks": len(soft_masks),
    }
    if has_scribbles:
        report["scribble_fraction"] = scribble_pixels / max(total_pixels, 1)
    return report
