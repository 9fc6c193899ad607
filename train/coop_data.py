"""Training pairs for the cooperative trainer: DUTS-layout image/mask pairs as tensors.

Images are resized to S×S (bilinear) and normalised with ImageNet mean/std; masks are resized
(bilinear) and thresholded at 0.5 to {0, 1}. Augmentation: a horizontal flip with probability
½, drawn from the global torch RNG so a resumed run (``num_workers = 0``) replays it exactly.
Decoded, resized arrays are cached in memory (datasets for CPU training are small).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from salkit.kernels.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD, decode_gray, decode_image
from salkit.base.layout import duts_samples


class SaliencyPairs(Dataset):
    def __init__(self, root: str | os.PathLike[str], size: int, augment: bool = True) -> None:
        self.samples = duts_samples(root)  # SalkitError: missing dir, unpaired files, size mismatch
        if not self.samples:
            raise SalkitError(f"dataset {root} holds no image/mask pairs")
        self.size = size
        self.augment = augment
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            sample = self.samples[index]
            image = Image.fromarray(decode_image(sample.image)).resize((self.size, self.size), Image.BILINEAR)
            gray = decode_gray(sample.mask)
            if gray.max(initial=0) <= 1:  # 0/1 masks as well as 0/255
                gray = gray * 255
            mask = Image.fromarray(gray.astype(np.uint8)).resize((self.size, self.size), Image.BILINEAR)
            self._cache[index] = (np.asarray(image), np.asarray(mask) >= 128)
        return self._cache[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self._load(index)
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0  # (H,W,3) → (3,H,W)
        x = (x - self._mean) / self._std
        y = torch.from_numpy(mask.copy()).float()[None]  # (1,H,W)
        if self.augment and bool(torch.rand(()) < 0.5):
            x, y = x.flip(-1), y.flip(-1)
        return {"image": x, "mask": y}
