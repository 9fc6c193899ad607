"""The training/evaluation dataset over the DUTS and S-DUTS layouts, whole or through a split file.

One class for every trainer. ``labels`` picks what an item carries besides ``image`` (3, S, S)
float32 (normalised with ``mean``/``std``, ImageNet's by default) and ``stem``:

- ``"mask"``: ``mask`` (1, S, S) float32 in {0, 1};
- ``"scribble"``: ``scribble`` (1, S, S) int64 in {0 unknown, 1 foreground, 2 background} and, when
  the root has a mask folder, ``hidden_gt`` (1, S, S) in {0, 1}, only for measuring how well the
  missing labels are recovered, never for a loss;
- ``"both"``: ``mask`` and ``scribble``.

Masks follow one threshold convention (``layout.binarise_mask``): > 128 of 255 is foreground, so
graded masks (PASCAL-S) are binarised as the published protocols do. The binary mask is resized
bilinearly with the image and thresholded again at ½ after the final resize, so targets stay
binary. Scribbles are resized by nearest neighbour so their labels survive.

``split`` (``"train"``, ``"test"`` or a file path; ``layout.split_samples``) keeps the ids a split
file lists; without it every paired file of the root is a sample.

Every file is decoded when the dataset is built (``cache=True``, the default): an unreadable file,
a mask or scribble of another size than its image, or a scribble value outside {0, 1, 2} is a
``SalkitError`` naming the file before any training starts. Decoded arrays stay in memory at a
working size (S×S without crops; otherwise the shorter side at most S / crop-fraction, so even
the smallest crop has S pixels). Scribble samples left with no annotated pixel at size S are
dropped and listed in ``skipped`` (they carry no training signal).

Augmentation (``augment=True``): a horizontal flip with probability ½, then a random crop
covering a fraction in ``scale`` of each side (``scale=(1, 1)``: flip only), resized to S. The
randomness comes from the global torch generator inside ``__getitem__``, so ``torch.manual_seed``
makes it reproducible and a resumed run (``num_workers = 0``) replays it exactly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from salkit.base.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD, decode_gray, decode_image
from salkit.base.layout import (
    Sample,
    binarise_mask,
    duts_samples,
    read_scribble,
    scribble_samples,
    split_samples,
)

Labels = Literal["mask", "scribble", "both"]
Planes = dict[str, np.ndarray]  # "image" (h, w, 3) uint8; "mask" (h, w) uint8 0..255; "scribble" (h, w) uint8


class SaliencyDataset(Dataset):
    """Image + mask and/or scribble samples of a dataset folder (or one split of it), resized to ``size``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int,
        *,
        labels: Labels = "mask",
        split: str | os.PathLike[str] | None = None,
        augment: bool = False,
        scale: tuple[float, float] = (0.75, 1.0),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        check_sizes: bool = True,
        cache: bool = True,
    ) -> None:
        if labels not in ("mask", "scribble", "both"):
            raise SalkitError(f"labels must be 'mask', 'scribble' or 'both', got {labels!r}")
        if size < 8:
            raise SalkitError(f"model input size must be at least 8 pixels, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise SalkitError(f"crop scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.root = Path(root)
        self.split = split
        self.size = int(size)
        self.labels = labels
        self.augment = augment
        self.scale = (float(scale[0]), float(scale[1]))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)  # broadcast over (3,S,S)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.samples = self._find(check_sizes)
        if not self.samples:
            raise SalkitError(f"dataset {root} holds no {'image/scribble' if labels == 'scribble' else 'image/mask'} pairs")
        self._read_masks = labels in ("mask", "both") or any(s.mask is not None for s in self.samples)
        self._cache: list[Planes] | None = None
        self.skipped: list[Path] = []  # scribbles without an annotated pixel at size S
        if cache:
            self._preload()
        elif labels != "mask":
            self._drop_unannotated()

    # -- building -------------------------------------------------------------------------------
    def _find(self, check_sizes: bool) -> list[Sample]:
        scribbles = self.labels != "mask"
        if self.split is not None:
            samples = split_samples(self.root, self.split, scribbles=scribbles, check_sizes=check_sizes)
        elif scribbles:
            samples = scribble_samples(self.root, check_sizes=check_sizes)
        else:
            samples = duts_samples(self.root, check_sizes=check_sizes)
        if self.labels == "both" and any(s.mask is None for s in samples):
            raise SalkitError(f"dataset {self.root} has scribbles but no mask folder; labels='both' needs both")
        return samples

    def _work_size(self, height: int, width: int) -> tuple[int, int]:
        """(w, h) the decoded planes are kept at: S×S without crops; else shorter side ≤ S / low, never upscaled."""
        if not self.augment or self.scale[0] == 1.0:
            return self.size, self.size
        factor = min(1.0, math.ceil(self.size / self.scale[0]) / min(height, width))
        return max(1, round(width * factor)), max(1, round(height * factor))

    def _decode(self, sample: Sample) -> Planes:
        image = decode_image(sample.image)
        height, width = image.shape[:2]
        planes: Planes = {"image": image}
        if sample.mask is not None and self._read_masks:
            planes["mask"] = binarise_mask(decode_gray(sample.mask)).astype(np.uint8) * np.uint8(255)
        if sample.scribble is not None and self.labels != "mask":
            planes["scribble"] = read_scribble(sample.scribble)  # SalkitError names values outside {0, 1, 2}
        for name, plane in planes.items():
            if plane.shape[:2] != (height, width):
                other = sample.mask if name == "mask" else sample.scribble
                raise SalkitError(f"{other} is {plane.shape[:2]} (H, W) but its image {sample.image} is {(height, width)}")
        target = self._work_size(height, width)
        if target != (width, height):
            planes = {name: _resize(plane, target, name) for name, plane in planes.items()}
        return planes

    def _preload(self) -> None:
        cache: list[Planes] = []
        kept: list[Sample] = []
        for sample in self.samples:
            planes = self._decode(sample)
            if "scribble" in planes and not _annotated_at(planes["scribble"], self.size):
                self.skipped.append(sample.scribble)
                continue
            kept.append(sample)
            cache.append(planes)
        self._keep(kept)
        self._cache = cache

    def _drop_unannotated(self) -> None:
        kept = []
        for sample in self.samples:
            assert sample.scribble is not None
            if _annotated_at(read_scribble(sample.scribble), self.size):
                kept.append(sample)
            else:
                self.skipped.append(sample.scribble)
        self._keep(kept)

    def _keep(self, kept: list[Sample]) -> None:
        if not kept:
            raise SalkitError(
                f"no scribble in {self.root} has an annotated pixel at size {self.size} "
                f"(all {len(self.samples)} are 0 = unknown everywhere)"
            )
        self.samples = kept

    def describe(self) -> str:
        """One line for the training log: where the samples come from, how many, how many skipped."""
        where = f"{self.root}" + (f" (split {self.split})" if self.split is not None else "")
        line = f"data: {len(self.samples)} samples from {where}"
        if self.skipped:
            names = ", ".join(p.name for p in self.skipped[:5]) + (" …" if len(self.skipped) > 5 else "")
            line += f"; skipped {len(self.skipped)} image(s) whose scribble has no annotated pixel at size {self.size}: {names}"
        else:
            line += "; skipped 0"
        return line

    # -- items ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def _crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        low, high = self.scale
        fractions = low + (high - low) * torch.rand(2)  # side fractions for (h, w)
        crop_h = max(1, int(round(height * float(fractions[0]))))
        crop_w = max(1, int(round(width * float(fractions[1]))))
        top = int(torch.randint(0, height - crop_h + 1, ()).item())
        left = int(torch.randint(0, width - crop_w + 1, ()).item())
        return left, top, left + crop_w, top + crop_h

    def __getitem__(self, index: int) -> dict[str, object]:
        sample = self.samples[index]
        planes = self._cache[index] if self._cache is not None else self._decode(sample)
        if self.augment:
            flip = bool(torch.rand(()) < 0.5)
            if self.scale != (1.0, 1.0):
                height, width = planes["image"].shape[:2]
                left, top, right, bottom = self._crop_box(height, width)
                planes = {name: plane[top:bottom, left:right] for name, plane in planes.items()}
            if flip:
                planes = {name: plane[:, ::-1] for name, plane in planes.items()}
        target = (self.size, self.size)
        planes = {name: _resize(np.ascontiguousarray(plane), target, name) for name, plane in planes.items()}

        image = torch.from_numpy(planes["image"].transpose(2, 0, 1).astype(np.float32) / 255.0)  # (S,S,3) → (3,S,S)
        item: dict[str, object] = {"image": (image - self.mean) / self.std}  # first: the trainer counts a batch by it
        if "mask" in planes:
            mask = torch.from_numpy((planes["mask"] >= 128).astype(np.float32)).unsqueeze(0)  # (S,S) → (1,S,S)
            item["hidden_gt" if self.labels == "scribble" else "mask"] = mask
        if "scribble" in planes:
            item["scribble"] = torch.from_numpy(planes["scribble"].astype(np.int64)).unsqueeze(0)  # (S,S) → (1,S,S)
        item["stem"] = sample.stem
        return item


def _resize(plane: np.ndarray, target: tuple[int, int], name: str) -> np.ndarray:
    """A plane → ``target = (w, h)``: bilinear for images and masks, nearest for scribble labels."""
    if plane.shape[1::-1] == target:
        return plane
    method = Image.NEAREST if name == "scribble" else Image.BILINEAR
    return np.asarray(Image.fromarray(plane).resize(target, method))


def _annotated_at(scribble: np.ndarray, size: int) -> bool:
    return bool(_resize(scribble, (size, size), "scribble").any())
