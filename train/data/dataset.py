"""Training/evaluation datasets over the DUTS and S-DUTS layouts (PyTorch side).

Each item is a dict: ``image`` (3, S, S) float32 ImageNet-normalised, ``mask`` (1, S, S)
float32 in [0, 1] and/or ``scribble`` (1, S, S) int64 in {0, 1, 2}, and ``stem``.
Augmentation (``augment=True``): horizontal flip, then a random crop covering ``scale`` of each
side, then resize to S. Images and masks are resized bilinearly, scribbles by nearest neighbour
so their labels survive. Randomness comes from torch's generator, so ``torch.manual_seed`` (and
the DataLoader's per-worker seeding) makes it reproducible.
"""

from __future__ import annotations

import os
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from salkit.kernels.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD, decode_gray, decode_image
from salkit.base.layout import Sample, duts_samples, read_scribble, scribble_samples

Labels = Literal["mask", "scribble", "both"]


def _read_mask01(path: os.PathLike[str] | str) -> np.ndarray:
    values = decode_gray(path)
    top = 1.0 if values.max(initial=0) <= 1 else 255.0  # some datasets store masks as 0/1
    return values.astype(np.float32) / np.float32(top)


class SaliencyDataset(Dataset):
    """Image + mask and/or scribble samples of a dataset folder, resized to ``size``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int,
        *,
        labels: Labels = "mask",
        augment: bool = False,
        scale: tuple[float, float] = (0.75, 1.0),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        check_sizes: bool = True,
    ) -> None:
        if labels not in ("mask", "scribble", "both"):
            raise SalkitError(f"labels must be 'mask', 'scribble' or 'both', got {labels!r}")
        if size < 8:
            raise SalkitError(f"model input size must be at least 8 pixels, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise SalkitError(f"crop scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.root = root
        self.size = int(size)
        self.labels = labels
        self.augment = augment
        self.scale = scale
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)  # broadcast over (3,S,S)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        if labels == "mask":
            self.samples: list[Sample] = duts_samples(root, check_sizes=check_sizes)
        else:
            self.samples = scribble_samples(root, check_sizes=check_sizes)
            if labels == "both":
                missing = [s.image for s in self.samples if s.mask is None]
                if missing:
                    raise SalkitError(f"dataset {root} has scribbles but no mask folder; labels='both' needs both")

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
        planes: dict[str, Image.Image] = {"image": Image.fromarray(decode_image(sample.image))}
        if self.labels in ("mask", "both"):
            assert sample.mask is not None
            planes["mask"] = Image.fromarray(_read_mask01(sample.mask))
        if self.labels in ("scribble", "both"):
            assert sample.scribble is not None
            planes["scribble"] = Image.fromarray(read_scribble(sample.scribble))
        width, height = planes["image"].size
        for name, plane in planes.items():
            if plane.size != (width, height):
                other = sample.mask if name == "mask" else sample.scribble
                raise SalkitError(f"{other} is {plane.size[::-1]} (H, W) but {sample.image} is {(height, width)}")

        if self.augment:
            flip = bool(torch.rand(()) < 0.5)
            box = self._crop_box(height, width)
            for name in planes:
                plane = planes[name].crop(box)
                planes[name] = plane.transpose(Image.FLIP_LEFT_RIGHT) if flip else plane

        target = (self.size, self.size)
        item: dict[str, object] = {"stem": sample.stem}
        rgb = np.asarray(planes["image"].resize(target, Image.BILINEAR), dtype=np.float32) / 255.0
        image = torch.from_numpy(rgb.transpose(2, 0, 1).copy())  # (S,S,3) → (3,S,S)
        item["image"] = (image - self.mean) / self.std
        if "mask" in planes:
            mask = np.asarray(planes["mask"].resize(target, Image.BILINEAR), dtype=np.float32)
            item["mask"] = torch.from_numpy(np.clip(mask, 0.0, 1.0)).unsqueeze(0)  # (S,S) → (1,S,S)
        if "scribble" in planes:
            scribble = np.asarray(planes["scribble"].resize(target, Image.NEAREST), dtype=np.int64)
            item["scribble"] = torch.from_numpy(scribble).unsqueeze(0)  # (S,S) → (1,S,S)
        return item
