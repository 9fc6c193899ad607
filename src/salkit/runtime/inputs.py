"""What ``Predictor.predict`` accepts, turned into one normalised batch and the original sizes.

Accepted, alone or in a list (mixed freely):

* file paths (``str`` / ``Path``) and encoded bytes — decoded by :func:`salkit.base.images.decode_image`
  (any size, greyscale, CMYK, 16-bit, alpha, EXIF rotation applied);
* PIL images of any mode — converted to RGB as files are, their EXIF orientation applied too, so
  ``Image.open(p)`` and ``p`` give the same map (at the photo's displayed size and orientation);
* uint8 arrays ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped), and
  uint16 arrays of those shapes (16-bit pictures, scaled by 65535 as 16-bit files are);
* float arrays ``(3, H, W)`` or batches ``(B, 3, H, W)``, already normalised with the bundle's
  mean/std (resized to S×S when H×W differs);
* DLPack tensors (``__dlpack__``) and ``__cuda_array_interface__`` objects, read through
  ``numpy.from_dlpack`` on the CPU; the same rules apply to the resulting array.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

from salkit.base.errors import SalkitError
from salkit.base.images import _high_depth_to_uint8, decode_image, preprocess

_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass
class Batch:
    x: np.ndarray  # (B, 3, S, S) float32, normalised
    sizes: list[tuple[int, int]]  # original (H, W) of each image


def to_numpy(obj: Any, index: int) -> Any:
    """DLPack / CUDA-array-interface objects → numpy (host); anything else unchanged."""
    if isinstance(obj, np.ndarray) or not (hasattr(obj, "__dlpack__") or hasattr(obj, "__cuda_array_interface__")):
        return obj
    if hasattr(obj, "__cuda_array_interface__") and not hasattr(obj, "__dlpack__"):
        raise SalkitError(
            f"input {index} is a CUDA device array without DLPack; this backend runs on the host: copy it to the host first"
        )
    try:
        return np.from_dlpack(obj)
    except (BufferError, RuntimeError, TypeError, ValueError) as err:
        raise SalkitError(f"input {index} ({type(obj).__name__}) cannot be read through DLPack on the host: {err}") from None


def _rgb_from_uint8(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[:, :, :3]
    raise SalkitError(f"image {index}: a uint8 image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode → RGB uint8; 16-bit / float modes are scaled by their range (as files are), not clipped."""
    img = ImageOps.exif_transpose(img)  # a no-op (the same pixels) without an orientation tag
    if img.mode in _HIGH_DEPTH_MODES:
        return np.repeat(_high_depth_to_uint8(img)[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _resize_normalised(chw: np.ndarray, size: int) -> np.ndarray:
    """(3, H, W) float → (3, S, S) float32, bilinear per channel."""
    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32)).resize((size, size), Image.BILINEAR)) for c in chw])


def _check_float(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.dtype.kind != "f":
        raise SalkitError(f"input {index}: arrays must be uint8 images or float (B, 3, H, W) batches, got dtype {arr.dtype}")
    if arr.shape[-3] != 3 or min(arr.shape[-2:]) < 1:
        raise SalkitError(f"input {index}: a float batch must be (B, 3, H, W) or (3, H, W), got shape {arr.shape}")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise SalkitError(f"input {index}: the array holds {bad} NaN/inf values (shape {arr.shape})")
    return arr.astype(np.float32, copy=False)


def as_items(images: Any) -> list[Any]:
    """A single input or a sequence of inputs → a list (a float 4-D array stays one item)."""
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


def to_batch(images: Any, size: int, mean: Sequence[float], std: Sequence[float]) -> Batch:
    """Every accepted input kind → one normalised (B, 3, S, S) batch plus original sizes."""
    items = as_items(images)
    rows: list[np.ndarray] = []
    sizes: list[tuple[int, int]] = []
    for index, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            item = decode_image(item)
        elif isinstance(item, bytes):
            item = decode_image(item, name=f"input {index} ({len(item)} bytes)")
        item = to_numpy(item, index)
        if isinstance(item, np.ndarray) and item.dtype == np.uint16:
            item = np.rint(item / np.float32(257.0)).astype(np.uint8)  # 0..65535 → 0..255, as 16-bit files
        if isinstance(item, Image.Image):
            rgb = _pil_to_rgb(item)
            rows.append(preprocess([rgb], size, mean, std))
            sizes.append(rgb.shape[:2])
        elif isinstance(item, np.ndarray) and item.dtype == np.uint8:
            rgb = _rgb_from_uint8(item, index)
            if min(rgb.shape[:2]) < 1:
                raise SalkitError(f"image {index} is empty (shape {item.shape})")
            rows.append(preprocess([np.ascontiguousarray(rgb)], size, mean, std))
            sizes.append(rgb.shape[:2])
        elif isinstance(item, np.ndarray) and item.ndim in (3, 4):
            arr = _check_float(item if item.ndim == 4 else item[None], index)  # (3,H,W) → (1,3,H,W)
            if arr.shape[0] == 0:
                raise SalkitError(f"input {index} is an empty batch (shape {item.shape})")
            height, width = arr.shape[2:]
            if (height, width) != (size, size):
                arr = np.stack([_resize_normalised(chw, size) for chw in arr])
            rows.append(arr)
            sizes.extend([(height, width)] * arr.shape[0])
        elif isinstance(item, np.ndarray):
            raise SalkitError(f"input {index}: an array of shape {item.shape} and dtype {item.dtype} is neither an image nor a batch")
        else:
            raise SalkitError(
                f"input {index}: expected a path, PIL image, numpy array or DLPack tensor, got {type(item).__name__}"
            )
    if not rows:
        raise SalkitError("no images given (empty batch)")
    return Batch(np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32), [(int(h), int(w)) for h, w in sizes])
