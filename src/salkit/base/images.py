"""Images in and maps out, without torch: decoding, folder listing, preprocessing, PNG maps.

Every image a user hands salkit goes through :func:`decode_image` (any PIL-readable file or
bytes → RGB uint8 HWC); every map salkit hands back goes through :func:`resize_map` (back to
the image's original size) and :func:`save_png_map` (atomic 8-bit PNG). Broken input raises
:class:`SalkitError` naming the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from salkit.base.atomic import atomic_path
from salkit.base.errors import SalkitError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".gif"}
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = str | os.PathLike[str] | bytes

# How many offending names an error message spells out before summarising the rest.
_LISTED = 8


def _describe(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return str(source)


def format_paths(paths: Sequence[object]) -> str:
    """``a, b, c`` for a short list; the first few and ``(+N more)`` for a long one."""
    shown = ", ".join(str(p) for p in paths[:_LISTED])
    extra = len(paths) - _LISTED
    return f"{shown} (+{extra} more)" if extra > 0 else shown


def _open(source: ImageSource, name: str | None) -> Image.Image:
    """Open and fully decode ``source``; every failure becomes a SalkitError naming it."""
    label = _describe(source, name)
    if not isinstance(source, bytes):
        path = Path(source)
        if not path.exists():
            raise SalkitError(f"image {label} does not exist")
        if path.is_dir():
            raise SalkitError(f"image {label} is a directory, not an image file")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as err:
        raise SalkitError(f"cannot open image {label}: {err.strerror}") from None
    try:
        with handle:
            img = Image.open(handle)
            # load() forces the full decode: a truncated file fails here, not later.
            img.load()
            # Phone photos store their rotation in EXIF; decoders such as OpenCV apply it too.
            return ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise SalkitError(f"{label} is not an image file (or its format is not supported)") from None
    except Image.DecompressionBombError as err:
        raise SalkitError(f"image {label} is too large to decode safely: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SalkitError(f"cannot decode image {label}: {err} (corrupt or truncated?)") from None


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer and float grayscale → uint8 (H, W), scaled by the format's range."""
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        return np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
    # PIL opens 16-bit PNG/TIFF as I;16 or I (int32 holding 0..65535).
    top = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
    return np.clip(np.rint(arr.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)


def decode_image(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Decode a file path or encoded bytes to RGB uint8 ``(H, W, 3)``.

    Grayscale, palette, CMYK, 16-bit and alpha images are converted (alpha is dropped, as
    OpenCV's ``imread`` does). ``name`` labels bytes in error messages.
    """
    img = _open(source, name)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _high_depth_to_uint8(img)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def decode_gray(source: ImageSource, *, name: str | None = None, palette_indices: bool = False) -> np.ndarray:
    """Decode to a single-channel uint8 ``(H, W)`` map (masks, saliency maps, scribbles).

    Palette images become the luminance of their colours, or with ``palette_indices`` their raw
    indices (label maps such as scribbles are often stored that way).
    """
    img = _open(source, name)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_uint8(img)
    if img.mode == "P" and palette_indices:
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode == "P":
        img = img.convert("RGB")
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask or saliency map file as float32 ``(H, W)`` in [0, 1]."""
    return decode_gray(path).astype(np.float32) / np.float32(255.0)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(directory: str | os.PathLike[str], *, what: str = "image folder") -> list[Path]:
    """The image files of a plain folder, sorted by name.

    Hidden files and sub-folders are skipped; any other file without an image suffix is a
    user error (it is listed), as is a missing or empty folder.
    """
    folder = Path(directory)
    if not folder.exists():
        raise SalkitError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise SalkitError(f"{what} {folder} is not a directory")
    images: list[Path] = []
    others: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_dir():
            continue
        (images if is_image_path(entry) else others).append(entry)
    if others:
        raise SalkitError(f"{what} {folder} holds files that are not images: {format_paths(others)}")
    if not images:
        raise SalkitError(f"{what} {folder} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def _by_stem(paths: Iterable[Path], folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    clashes: list[str] = []
    for path in paths:
        if path.stem in found:
            clashes.append(f"{found[path.stem].name} / {path.name}")
        found[path.stem] = path
    if clashes:
        raise SalkitError(f"{folder} has several files with the same stem: {format_paths(clashes)}")
    return found


def _companion_of(stem: str, paired: set[str]) -> bool:
    """True when ``stem`` is ``<p>_<suffix>`` for a paired stem ``p`` (e.g. ``x_uncertainty`` next to ``x``)."""
    cut = stem.rfind("_")
    while cut > 0:
        if stem[:cut] in paired:
            return True
        cut = stem.rfind("_", 0, cut)
    return False


def pair_by_stem(
    dir_a: str | os.PathLike[str],
    dir_b: str | os.PathLike[str],
    *,
    what_a: str = "image folder",
    what_b: str = "image folder",
    skip_companions_in_a: bool = False,
) -> list[tuple[Path, Path]]:
    """Pair the images of two folders by file stem (``x.jpg`` ↔ ``x.png``), sorted by stem.

    Every file must have a partner; the unmatched ones on each side are listed in the error.
    With ``skip_companions_in_a``, unpaired files of ``dir_a`` named ``<stem>_<suffix>`` after a
    paired stem are side maps (``x_uncertainty.png`` beside the prediction ``x.png``) and skipped.
    """
    a = _by_stem(list_images(dir_a, what=what_a), Path(dir_a))
    b = _by_stem(list_images(dir_b, what=what_b), Path(dir_b))
    paired = a.keys() & b.keys()
    only_a = sorted(a.keys() - b.keys())
    if skip_companions_in_a:
        only_a = [stem for stem in only_a if not _companion_of(stem, paired)]
    only_b = sorted(b.keys() - a.keys())
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"in {dir_a} without a partner in {dir_b}: {format_paths([a[s] for s in only_a])}")
        if only_b:
            parts.append(f"in {dir_b} without a partner in {dir_a}: {format_paths([b[s] for s in only_b])}")
        raise SalkitError("unmatched files: " + "; ".join(parts))
    return [(a[stem], b[stem]) for stem in sorted(paired)]


def check_map(array: object, name: str = "map") -> np.ndarray:
    """A finite real 2-D array, returned as float64; anything else is a user error."""
    if not isinstance(array, np.ndarray):
        raise SalkitError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:-1])  # (1,H,W)|(H,W,1) → (H,W)
    if array.ndim != 2:
        raise SalkitError(f"{name} must be 2-D (H, W), got shape {array.shape}")
    if array.size == 0:
        raise SalkitError(f"{name} is empty (shape {array.shape})")
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype.kind not in "uif":
        raise SalkitError(f"{name} must hold real numbers, got dtype {array.dtype}")
    out = array.astype(np.float64)
    if not np.isfinite(out).all():
        raise SalkitError(f"{name} holds {int((~np.isfinite(out)).sum())} NaN/inf values")
    return out


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise SalkitError(f"{name} must be two positive integers (H, W), got {tuple(size)}")
    return int(size[0]), int(size[1])


def resize_map(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size = (H, W)``, float32 (values stay within the input's range)."""
    height, width = _check_size(size, "target size")
    values = check_map(array).astype(np.float32)
    if values.shape == (height, width):
        return values
    resized = Image.fromarray(values).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32).copy()


def to_uint8_map(map01: np.ndarray, name: str = "map") -> np.ndarray:
    """A [0, 1] map → uint8 0..255 (rounded). Values outside [0, 1] beyond rounding noise are refused."""
    values = check_map(map01, name)
    low, high = float(values.min()), float(values.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise SalkitError(f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png_map(path: str | os.PathLike[str], map01: np.ndarray) -> None:
    """Write a [0, 1] map as an 8-bit grayscale PNG, atomically."""
    target = Path(path)
    pixels = to_uint8_map(map01, name=f"map for {target}")
    with atomic_path(target) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _as_rgb_uint8(image: object, index: int) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if not isinstance(image, np.ndarray):
        raise SalkitError(f"image {index} must be a PIL image or a uint8 (H, W, 3) array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise SalkitError(f"image {index} must be uint8 (H, W, 3), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise SalkitError(f"image {index} must have shape (H, W, 3), got {image.shape}")
    return image


def preprocess(
    images: Sequence[object],
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """RGB uint8 images (arrays or PIL) → a normalised ``(B, 3, S, S)`` float32 batch.

    Each image is resized to S×S (bilinear), scaled to [0, 1], then ``(x − mean) / std`` per channel.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise SalkitError(f"model input size must be a positive integer, got {size!r}")
    if len(images) == 0:
        raise SalkitError("no images to preprocess")
    mean_arr = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)  # broadcast over (B,3,S,S)
    std_arr = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    if not np.isfinite(mean_arr).all() or not np.isfinite(std_arr).all() or (std_arr <= 0).any():
        raise SalkitError(f"normalisation needs finite mean and positive std, got mean={tuple(mean)} std={tuple(std)}")
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        rgb = _as_rgb_uint8(image, i)
        if rgb.shape[:2] != (size, size):
            rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BILINEAR))
        batch[i] = rgb.transpose(2, 0, 1)  # (S,S,3) → (3,S,S)
    batch /= np.float32(255.0)
    return (batch - mean_arr) / std_arr
