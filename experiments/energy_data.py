"""PASCAL-S for the energy diagnostics: the fixed split, a held-out tenth of train, tensors in memory.

Layout (../shared/data/pascal-s, never copied into the repository): ``img/N.jpg``, ``gt/N.png``
with graded masks (binarised at > 128), ``train.txt`` / ``test.txt`` listing ids. ``val`` is the
part of ``train.txt`` with id ≡ 1 (mod 10) (85 photographs), held out for choosing settings;
``train`` is the rest of ``train.txt`` (595); ``test`` is ``test.txt`` (170), for the final report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD, decode_gray, decode_image

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pascal-s"
SPLITS = ("train", "val", "test")


def split_ids(root: Path, split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    listed = (root / ("test.txt" if split == "test" else "train.txt")).read_text().split()
    if split == "test":
        return listed
    held_out = [i for i in listed if int(i) % 10 == 1]
    return held_out if split == "val" else [i for i in listed if int(i) % 10 != 1]


@dataclass
class Split:
    ids: list[str]
    images: torch.Tensor  # (N,3,S,S) ImageNet-normalised
    masks: torch.Tensor  # (N,1,S,S) in {0, 1}: the graded mask resized bilinearly, then > 128
    full_masks: list[np.ndarray]  # (H,W) bool at each photo's own size, for the standard protocol


def load_split(root: Path, split: str, size: int) -> Split:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    ids = split_ids(root, split)
    images, masks, full = [], [], []
    for stem in ids:
        rgb = Image.fromarray(decode_image(root / "img" / f"{stem}.jpg")).resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255.0  # (H,W,3) → (3,H,W)
        images.append((x - mean) / std)
        gray = decode_gray(root / "gt" / f"{stem}.png")
        full.append(gray > 128)
        small = Image.fromarray(gray.astype(np.float32)).resize((size, size), Image.BILINEAR)
        masks.append(torch.from_numpy(np.asarray(small) > 128).float()[None])  # (1,S,S)
    return Split(ids, torch.stack(images), torch.stack(masks), full)


class Pairs(Dataset):
    """Training items as the cooperative trainer expects them, with a random horizontal flip."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x, y = self.split.images[index], self.split.masks[index]
        if bool(torch.rand(()) < 0.5):
            x, y = x.flip(-1), y.flip(-1)
        return {"image": x, "mask": y}
