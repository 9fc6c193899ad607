"""The image-level front end every caller of the runtime shares.

    images ─ decode, resize to S × S, normalise ─▶ Batch ─ tensor call ─▶ (B, C, S, S) ─ back ─▶ maps at (H, W)

:class:`FrontEnd` holds the steps for one bundle: :meth:`~FrontEnd.images` (whatever
``Predictor.predict`` accepts, salkit.runtime.inputs), :meth:`~FrontEnd.normalised` (a batch already
at S × S; its maps stay S × S), :meth:`~FrontEnd.given_maps` / :meth:`~FrontEnd.starts` (the maps
``refine`` takes, at the image's size and at S × S), :meth:`~FrontEnd.back` / :meth:`~FrontEnd.back_batch`
(maps resized to each image's size) and :meth:`~FrontEnd.back_refined` (refine's change added to the
given map).
:class:`ImageCalls` is ``predict`` / ``refine`` on images over a tensor-level object
(``Predictor``, ``BatchingPredictor``); the server's models (salkit.runtime.server.models) run the
same steps around their batched calls. Every check the runtime makes on an image batch or a map
lives here (:func:`check_batch`, :func:`check_maps`, :meth:`FrontEnd.maps`), so the Python API and
the server accept and refuse the same inputs with the same words.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.base.images import check_map, resize_map
from salkit.runtime.bundle import Manifest
from salkit.runtime.inputs import Batch, as_items, to_batch, to_numpy

UNCERTAINTY_CHANNELS = ("predictive", "aleatoric", "epistemic")  # the entropy maps of a coop prediction, in order


@dataclasses.dataclass
class Prediction:
    saliency: list[np.ndarray]  # H×W float32 in [0, 1], original size
    uncertainty: dict[str, list[np.ndarray]] | None  # predictive / aleatoric / epistemic
    stats: dict[str, list[float]]  # e.g. qefpn iterations, residuals


def check_batch(x: Any, size: int, name: str = "x") -> np.ndarray:
    """A normalised image batch: float32 (B, 3, S, S), B ≥ 1, finite; returned contiguous."""
    x = to_numpy(x, 0)
    if not isinstance(x, np.ndarray):
        raise SalkitError(f"{name} must be a numpy array (B, 3, {size}, {size}), got {type(x).__name__}")
    if x.dtype != np.float32:
        raise SalkitError(f"{name} must be float32 (B, 3, {size}, {size}), got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1:] != (3, size, size):
        raise SalkitError(f"{name} must have shape (B, 3, {size}, {size}), got {x.shape}")
    if x.shape[0] == 0:
        raise SalkitError(f"{name} is an empty batch (shape {x.shape})")
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise SalkitError(f"{name} holds {bad} NaN/inf values")
    return np.ascontiguousarray(x)


def check_maps(maps: Any, shape: tuple[int, ...], name: str = "maps") -> np.ndarray:
    """A float batch of maps of exactly ``shape`` holding finite probabilities in [0, 1]."""
    maps = to_numpy(maps, 0)
    if not isinstance(maps, np.ndarray) or maps.shape != shape or maps.dtype.kind != "f":
        raise SalkitError(f"{name} must be a float array of shape {shape}, got {getattr(maps, 'shape', type(maps).__name__)}")
    if not np.isfinite(maps).all() or maps.min() < 0 or maps.max() > 1:
        raise SalkitError(f"{name} must be finite probabilities in [0, 1], got values in [{np.nanmin(maps):.4g}, {np.nanmax(maps):.4g}]")
    return maps


def _probabilities(item: Any, index: int, name: str) -> np.ndarray:
    """One map as given (path, uint8 0..255 or float [0, 1], (H, W) / (1, H, W) / (H, W, 1)) → float64 (H, W)."""
    item = to_numpy(item, index)
    if isinstance(item, (str, Path)):
        from salkit.base.images import read_mask

        item = read_mask(item)
    values = check_map(item, name=f"{name} {index}")
    if getattr(item, "dtype", None) == np.uint8:
        values = values / 255.0
    if values.min() < 0 or values.max() > 1:
        raise SalkitError(
            f"{name} {index} must hold probabilities in [0, 1] (or uint8 0..255), got [{values.min():.4g}, {values.max():.4g}]"
        )
    return values


class FrontEnd:
    """The pre- and post-processing of one bundle (its input size S, mean and std)."""

    def __init__(self, manifest: Manifest) -> None:
        self.size, self.mean, self.std = manifest.input_size, manifest.mean, manifest.std

    def images(self, images: Any) -> Batch:
        """Any accepted images (salkit.runtime.inputs) → their normalised batch and sizes."""
        return to_batch(images, self.size, self.mean, self.std)

    def normalised(self, x: Any, name: str = "x") -> Batch:
        """A batch already resized and normalised (:func:`check_batch`); its maps stay S × S."""
        return Batch(check_batch(x, self.size, name), None)

    def given_maps(self, maps: Any, batch: Batch, *, name: str = "map") -> list[np.ndarray]:
        """The maps ``refine`` was given, checked: one float32 (H, W) in [0, 1] per image of ``batch``, at
        its image's size (S × S for a normalised batch).

        A map may have any size but its image's turned by 90° (the sign of an unapplied EXIF
        rotation); another size is resized to its image's.
        """
        items = as_items(maps)
        if len(items) != len(batch.x):
            raise SalkitError(f"refine got {len(batch.x)} images but {len(items)} maps")
        given = []
        for i, item in enumerate(items):
            values = _probabilities(item, i, name)
            height, width = batch.sizes[i] if batch.sizes is not None else (self.size, self.size)
            if height != width and values.shape == (width, height):
                raise SalkitError(
                    f"{name} {i} is {values.shape} (H, W): its image turned by 90°, whose displayed size is {(height, width)}; "
                    "maps must be in the photo's displayed orientation (EXIF rotation applied, as predict writes them)"
                )
            given.append(np.clip(resize_map(values.astype(np.float32), (height, width)), 0.0, 1.0))
        return given

    def maps(self, maps: Any, batch: Batch, *, name: str = "map") -> np.ndarray:
        """The maps ``refine`` starts from, one per image of ``batch`` → (B, 1, S, S) in [0, 1]."""
        return self.starts(self.given_maps(maps, batch, name=name))

    def starts(self, given: list[np.ndarray]) -> np.ndarray:
        """:meth:`given_maps` resized to S × S → (B, 1, S, S) in [0, 1]: what the energy's steps revise."""
        resized = [resize_map(values, (self.size, self.size)) for values in given]
        return np.clip(np.stack(resized)[:, None], 0.0, 1.0)  # (B, S, S) → (B, 1, S, S)

    @staticmethod
    def back_refined(refined: np.ndarray, starts: np.ndarray, given: list[np.ndarray]) -> list[np.ndarray]:
        """refine's result at each image's size: the given map plus the change the steps made at S × S,
        resized — not the S × S result resized. So 0 steps return the given map itself, and a map finer
        than S × S keeps its detail (the round trip through S × S alone blurred G(X)'s maps of photographs
        enough to raise their MAE by 0.0007). → one (1, H, W) float32 array per image, in [0, 1]."""
        out = []
        for r, s, g in zip(refined, starts, given, strict=True):
            change = r[0] - s[0]
            if change.shape != g.shape:
                change = resize_map(change, g.shape)
            out.append(np.clip(g + change, 0.0, 1.0)[None].astype(np.float32))
        return out

    @staticmethod
    def back(maps: np.ndarray, batch: Batch, *, clip: bool = False) -> list[np.ndarray]:
        """(B, C, S, S) → one (C, H, W) float32 array per image, bilinear; ``clip`` to [0, 1] (probabilities)."""
        if batch.sizes is None:
            rows = [np.asarray(m, dtype=np.float32) for m in maps]
        else:
            rows = [np.stack([resize_map(channel, size) for channel in m]) for m, size in zip(maps, batch.sizes, strict=True)]
        return [np.clip(r, 0.0, 1.0) for r in rows] if clip else rows

    @classmethod
    def back_batch(cls, maps: np.ndarray, batch: Batch, *, clip: bool = False) -> np.ndarray:
        """:meth:`back` for images of one size, as one contiguous (B, C, H, W) float32 array."""
        if batch.sizes is None:  # S × S already: no per-image copies
            maps = np.ascontiguousarray(maps, dtype=np.float32)
            return np.clip(maps, 0.0, 1.0) if clip else maps
        return np.ascontiguousarray(np.stack(cls.back(maps, batch, clip=clip)), dtype=np.float32)


class ImageCalls:
    """``predict`` / ``refine`` on images for a class with ``manifest``, ``predict_tensor`` and ``refine_tensor``."""

    manifest: Manifest
    predict_tensor: Any
    refine_tensor: Any

    def predict(
        self,
        images: Any,
        *,
        samples: int | None = None,
        steps: int | None = None,
        noise: bool = False,
        uncertainty: bool = True,
        seed: int | None = None,
    ) -> Prediction:
        from salkit.runtime.kinds import get_kind

        front = FrontEnd(self.manifest)
        batch = front.images(images)
        out = self.predict_tensor(batch.x, samples=samples, steps=steps, noise=noise, uncertainty=uncertainty, seed=seed)
        back = lambda key, clip=False: [m[0] for m in front.back(out[key], batch, clip=clip)]
        unc = {key: back(key) for key in UNCERTAINTY_CHANNELS} if "predictive" in out else None
        stats = {key: [float(v) for v in out[key]] for key in get_kind(self.manifest.model_kind).stats if key in out}
        return Prediction(saliency=back("saliency", True), uncertainty=unc, stats=stats)

    def refine(self, images: Any, maps: Any, *, steps: int | None = None) -> list[np.ndarray]:
        front = FrontEnd(self.manifest)
        batch = front.images(images)
        given = front.given_maps(maps, batch)
        starts = front.starts(given)
        refined = self.refine_tensor(batch.x, starts, steps=steps)
        return [m[0] for m in front.back_refined(refined, starts, given)]
