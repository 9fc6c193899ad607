"""Dataset folder layouts: DUTS (image + mask pairs), S-DUTS (image + scribble) and plain folders.

A dataset root holds sub-folders found by name (first match wins):

- images: ``img``, ``image``, ``images``, ``Imgs``, ``DUTS-TR-Image``, ``DUTS-TE-Image``
- masks: ``gt``, ``GT``, ``mask``, ``masks``, ``DUTS-TR-Mask``, ``DUTS-TE-Mask``
- scribbles: ``scribble``, ``scribbles`` (S-DUTS values: 1 = foreground, 2 = background, 0 = unknown)

Files pair by stem (``x.jpg`` ↔ ``x.png``); unmatched files are listed in the error. A split
(``split_samples``) restricts a root to the ids listed in a text file, one per line, as PASCAL-S's
``train.txt`` / ``test.txt``: then files outside the split are ignored, and an id without its files
is the error. Sizes are compared in display orientation (EXIF rotation applied, as decoding does).

Masks: one threshold convention everywhere (training, ``check``, evaluation): a uint8 mask is
foreground where it is > 128 (graded masks such as PASCAL-S's, which count annotators, included);
a mask holding only 0 and 1 is foreground where it is 1. Nothing here needs torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.base.images import decode_gray, decode_image, format_paths, list_images, pair_by_stem

IMAGE_DIRS = ("img", "image", "images", "Imgs", "DUTS-TR-Image", "DUTS-TE-Image")
MASK_DIRS = ("gt", "GT", "mask", "masks", "DUTS-TR-Mask", "DUTS-TE-Mask")
SCRIBBLE_DIRS = ("scribble", "scribbles")
SCRIBBLE_VALUES = frozenset({0, 1, 2})
MASK_THRESHOLD = 128  # uint8 foreground is > 128, as PySODMetrics and the published protocols binarise
_ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


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
            orientation = img.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError):
        raise SalkitError(f"cannot read image {path}: not an image file, or corrupt") from None
    return (width, height) if orientation in _ROTATED else (height, width)


def binarise_mask(values: np.ndarray) -> np.ndarray:
    """A decoded uint8 mask → bool foreground (> 128; a 0/1 mask: == 1). See the module docstring."""
    return values > (MASK_THRESHOLD if values.max(initial=0) > 1 else 0)


def read_mask_bool(path: Path) -> np.ndarray:
    return binarise_mask(decode_gray(path))


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


def read_split(root: str | os.PathLike[str], split: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """The split file and its ids: ``split`` is a file path, or a name ``N`` for ``<root>/N.txt``.

    One id a line (blank lines and ``#`` comments skipped); an empty split or a repeated id is an error.
    """
    given = Path(split)
    path = given if given.is_file() else Path(root) / f"{split}.txt"
    if not path.is_file():
        raise SalkitError(f"split {str(split)!r}: neither a file nor {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SalkitError(f"split file {path} cannot be read: {err}") from None
    ids = [line.split("#", 1)[0].strip() for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise SalkitError(f"split file {path} lists no ids (empty split)")
    seen: set[str] = set()
    repeated = [i for i in ids if i in seen or seen.add(i)]
    if repeated:
        raise SalkitError(f"split file {path} repeats ids: {format_paths(repeated)}")
    return path, ids


def _stems(folder: Path, what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in list_images(folder, what=what):
        if path.stem in found:
            raise SalkitError(f"{folder} has several files with the same stem: {found[path.stem].name} / {path.name}")
        found[path.stem] = path
    return found


def split_samples(
    root: str | os.PathLike[str], split: str | os.PathLike[str], *, scribbles: bool = False, check_sizes: bool = True
) -> list[Sample]:
    """The samples of the ids a split file lists, in the file's order (masks; with ``scribbles`` also scribbles).

    Under ``scribbles`` the mask folder is optional (its masks only measure recovery); an id
    missing its image, its mask (when masks are read) or its scribble is an error naming the file.
    """
    base = _root(root)
    path, ids = read_split(base, split)
    folders = {"image": find_subdir(base, IMAGE_DIRS, "image")}
    if scribbles:
        folders["scribble"] = find_subdir(base, SCRIBBLE_DIRS, "scribble")
    mask_dir = find_subdir(base, MASK_DIRS, "mask", required=not scribbles)
    if mask_dir is not None:
        folders["mask"] = mask_dir
    files = {kind: _stems(folder, f"{kind} folder") for kind, folder in folders.items()}
    missing = [f"{folders[kind]}/{i}.*" for i in ids for kind in folders if i not in files[kind]]
    if missing:
        raise SalkitError(f"split file {path} lists ids without their files: {format_paths(missing)}")
    samples = [Sample(stem=i, image=files["image"][i], mask=files["mask"][i] if "mask" in files else None,
                      scribble=files["scribble"][i] if scribbles else None) for i in ids]
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


def check_dataset(root: str | os.PathLike[str], split: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Validate a dataset tree (or one split of it) fully (decodes every file); returns counts, raises on the first problem.

    Checks pairing and sizes, that masks are binary (0/255, or 0/1), that scribbles use {0, 1, 2},
    and, where both exist, that foreground scribbles lie inside the mask and background ones outside.
    """
    base = _root(root)
    has_masks = find_subdir(base, MASK_DIRS, "mask", required=False) is not None
    has_scribbles = find_subdir(base, SCRIBBLE_DIRS, "scribble", required=False) is not None
    if not has_masks and not has_scribbles:
        raise SalkitError(f"dataset {base} has neither a mask folder ({', '.join(MASK_DIRS)}) nor a scribble folder ({', '.join(SCRIBBLE_DIRS)})")
    if split is not None:
        samples = split_samples(base, split, scribbles=has_scribbles)
    else:
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
            mask = binarise_mask(mask_values)
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
