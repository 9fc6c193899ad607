"""SaliencyDataset: tensors, normalisation, augmentation that moves labels with the image, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from salkit.base.errors import SalkitError
from salkit.base.images import IMAGENET_MEAN, IMAGENET_STD
from salkit.train.data.dataset import SaliencyDataset

torch.set_num_threads(1)


def test_item_shapes_and_types(synthetic_dataset: Path) -> None:
    ds = SaliencyDataset(synthetic_dataset, 32, labels="both")
    item = ds[3]
    assert item["stem"] == "synth_00003"
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert item["scribble"].shape == (1, 32, 32) and item["scribble"].dtype == torch.int64
    assert 0 <= float(item["mask"].min()) and float(item["mask"].max()) <= 1
    assert set(item["scribble"].unique().tolist()) <= {0, 1, 2}
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert set(SaliencyDataset(synthetic_dataset, 32, labels="mask")[0]) == {"stem", "image", "mask"}
    # scribble items carry the mask as hidden_gt (for recovery metrics), never as "mask"
    assert set(SaliencyDataset(synthetic_dataset, 32, labels="scribble")[0]) == {"stem", "image", "scribble", "hidden_gt"}


def test_image_is_resized_and_imagenet_normalised(synthetic_dataset: Path) -> None:
    item = SaliencyDataset(synthetic_dataset, 48)[0]
    rgb = Image.open(synthetic_dataset / "img" / "synth_00000.jpg").convert("RGB").resize((48, 48), Image.BILINEAR)
    expected = (np.asarray(rgb, np.float32) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)  # (S,S,3)
    np.testing.assert_allclose(item["image"].numpy().transpose(1, 2, 0), expected, atol=1e-5)
    gt = np.asarray(Image.open(synthetic_dataset / "gt" / "synth_00000.png"))
    resized = np.asarray(Image.fromarray(gt).resize((48, 48), Image.BILINEAR))
    np.testing.assert_array_equal(item["mask"][0].numpy(), resized >= 128)


def test_scribbles_stay_on_their_side_after_augmentation(synthetic_dataset: Path) -> None:
    ds = SaliencyDataset(synthetic_dataset, 64, labels="both", augment=True, scale=(0.6, 1.0))
    torch.manual_seed(0)
    for index in range(len(ds)):
        item = ds[index]
        mask, scribble = item["mask"][0], item["scribble"][0]
        assert (scribble == 1).any() or (scribble == 2).any()
        assert bool((mask[scribble == 1] > 0.5).all()) and bool((mask[scribble == 2] < 0.5).all())


def test_flip_moves_image_and_labels_together(synthetic_dataset: Path) -> None:
    plain = SaliencyDataset(synthetic_dataset, 64, labels="both")[1]
    ds = SaliencyDataset(synthetic_dataset, 64, labels="both", augment=True, scale=(1.0, 1.0))
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = ds[1]
        flipped = torch.equal(item["image"], plain["image"].flip(-1))
        assert flipped or torch.equal(item["image"], plain["image"])
        for key in ("mask", "scribble"):
            assert torch.equal(item[key], plain[key].flip(-1) if flipped else plain[key])
        seen.add(flipped)
    assert seen == {True, False}


def test_random_crop_is_reproducible_and_changes_the_view(synthetic_dataset: Path) -> None:
    ds = SaliencyDataset(synthetic_dataset, 64, augment=True, scale=(0.5, 0.6))
    torch.manual_seed(5)
    a = ds[2]
    torch.manual_seed(5)
    b = ds[2]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    plain = SaliencyDataset(synthetic_dataset, 64)[2]
    assert not torch.equal(a["image"], plain["image"]) and not torch.equal(a["image"], plain["image"].flip(-1))


def test_dataloader_batches(synthetic_dataset: Path) -> None:
    batch = next(iter(DataLoader(SaliencyDataset(synthetic_dataset, 32, labels="both"), batch_size=5)))
    assert batch["image"].shape == (5, 3, 32, 32) and batch["scribble"].shape == (5, 1, 32, 32)
    assert batch["stem"] == [f"synth_{i:05d}" for i in range(5)]


def test_errors_name_the_files(synthetic_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(SalkitError, match="does not exist"):
        SaliencyDataset(tmp_path / "none", 32)
    with pytest.raises(SalkitError, match="labels"):
        SaliencyDataset(synthetic_dataset, 32, labels="boxes")
    data = Path(shutil.copytree(synthetic_dataset, tmp_path / "data"))
    Image.new("L", (30, 30)).save(data / "gt" / "synth_00006.png")
    with pytest.raises(SalkitError, match="synth_00006"):
        SaliencyDataset(data, 32)
    with pytest.raises(SalkitError, match=r"synth_00006.png is \(30, 30\)"):  # decoded up front, headers unread
        SaliencyDataset(data, 32, check_sizes=False)
    lazy = SaliencyDataset(data, 32, check_sizes=False, cache=False)
    with pytest.raises(SalkitError, match="synth_00006.png"):
        lazy[6]
    (data / "img" / "synth_00007.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(SalkitError, match="synth_00007.jpg"):
        lazy[7]
    for sub, suffix in (("gt", "png"), ("img", "jpg"), ("scribble", "png")):
        (data / sub / f"synth_00006.{suffix}").unlink()
    with pytest.raises(SalkitError, match="synth_00007.jpg"):
        SaliencyDataset(data, 32, check_sizes=False)
    shutil.rmtree(data / "gt")
    with pytest.raises(SalkitError, match="no mask folder"):
        SaliencyDataset(data, 32)
    with pytest.raises(SalkitError, match="needs both"):
        SaliencyDataset(data, 32, labels="both", check_sizes=False)
