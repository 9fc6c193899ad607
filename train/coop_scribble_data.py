"""Training items for learning from scribbles: S-DUTS-layout image/scribble pairs as tensors.

``img/`` + ``scribble/`` (1 = foreground, 2 = background, 0 = unknown); a ``gt/`` folder, when
present, is read as ``hidden_gt`` for measuring how well the missing labels are recovered — the
trainer only ever passes it to the recovery metrics, never to a loss.

Images are resized to S×S (bilinear) and ImageNet-normalised; scribbles by nearest neighbour so
their labels survive; masks bilinearly, thresholded at 0.5. Every scribble is decoded and resized
when the dataset is built, so a value outside {0, 1, 2} is reported (naming the file) before
training starts, and images left with no annotated pixel at size S are dropped and counted
(``skipped``): they would carry no training signal. Augmentation: a horizontal flip with
probability ½ from the global torch RNG, as in ``coop_data.SaliencyPairs``, so a resumed run
replays it exactly. Arrays are cached in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from salkit.kernels.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD, decode_gray, decode_image
from salkit.base.layout import Sample, read_scribble, scribble_samples


def resize_scribble(scribble: np.ndarray, size: int) -> np.ndarray:
    """(H, W) uint8 labels → (size, size) uint8 by nearest neighbour (labels are never blended)."""
    return np.asarray(Image.fromarray(scribble).resize((size, size), Image.NEAREST))


class ScribblePairs(Dataset):
    def __init__(self, root: str | os.PathLike[str], size: int, augment: bool = True) -> None:
        samples = scribble_samples(root)  # SalkitError: missing folders, unpaired files, size mismatch
        if not samples:
            raise SalkitError(f"dataset {root} holds no image/scribble pairs")
        self.size = size
        self.augment = augment
        self.samples: list[Sample] = []
        self.scribbles: list[np.ndarray] = []
        self.skipped: list[Path] = []  # scribbles with no annotated pixel at this size
        for sample in samples:
            assert sample.scribble is not None
            labels = resize_scribble(read_scribble(sample.scribble), size)  # SalkitError names bad values
            if not labels.any():
                self.skipped.append(sample.scribble)
                continue
            self.samples.append(sample)
            self.scribbles.append(labels)
        if not self.samples:
            raise SalkitError(
                f"no scribble in {root} has an annotated pixel at size {size} "
                f"(all {len(samples)} are 0 = unknown everywhere)"
            )
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index not in self._cache:
            sample = self.samples[index]
            target = (self.size, self.size)
            image = np.asarray(Image.fromarray(decode_image(sample.image)).resize(target, Image.BILINEAR))
            gt = None
            if sample.mask is not None:
                gray = decode_gray(sample.mask)
                if gray.max(initial=0) <= 1:  # 0/1 masks as well as 0/255
                    gray = gray * 255
                gt = np.asarray(Image.fromarray(gray.astype(np.uint8)).resize(target, Image.BILINEAR)) >= 128
            self._cache[index] = (image, gt)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, gt = self._load(index)
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0  # (H,W,3) → (3,H,W)
        item = {
            "image": (x - self._mean) / self._std,
            "scribble": torch.from_numpy(self.scribbles[index].astype(np.int64))[None],  # (H,W) → (1,H,W)
        }
        if gt is not None:
            item["hidden_gt"] = torch.from_numpy(gt.copy()).float()[None]  # (H,W) → (1,H,W)
        if self.augment and bool(torch.rand(()) < 0.5):
            item = {k: v.flip(-1) for k, v in item.items()}
        return item
