"""Scribbles derived from masks: labels on the right side, thin, deterministic per (seed, id), trainable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from salkit.base.layout import check_dataset
from salkit.train.data.cli import main as sal_data
from salkit.train.data.dataset import SaliencyDataset
from salkit.train.data.scribbles import scribble_from_mask, scribble_rng
from tests.fixtures.data import noise_photo_folder


def _mask(h: int = 120, w: int = 160) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[20:90, 30:80] = True  # a large object
    mask[40:70, 110:140] = True  # a second part
    mask[5:7, 150:152] = True  # a speck (0.02% of the image): no stroke
    return mask


def test_strokes_stay_on_their_side_and_are_thin() -> None:
    mask = _mask()
    scribble = scribble_from_mask(mask, scribble_rng(0, "x"))
    assert set(np.unique(scribble).tolist()) == {0, 1, 2}
    assert not (scribble == 1)[~mask].any() and not (scribble == 2)[mask].any()
    assert (scribble[20:90, 30:80] == 1).any() and (scribble[40:70, 110:140] == 1).any()
    assert not (scribble[0:10, 145:155] == 1).any()
    assert 0.002 < (scribble > 0).mean() < 0.1  # thin strokes, most pixels unknown
    assert (scribble[~mask] == 2).sum() > 0


def test_same_seed_and_id_give_the_same_strokes() -> None:
    mask = _mask()
    a = scribble_from_mask(mask, scribble_rng(4, "17"))
    assert np.array_equal(a, scribble_from_mask(mask, scribble_rng(4, "17")))
    assert not np.array_equal(a, scribble_from_mask(mask, scribble_rng(5, "17")))
    assert not np.array_equal(a, scribble_from_mask(mask, scribble_rng(4, "18")))


@pytest.mark.parametrize("fill", [False, True])
def test_empty_and_full_masks(fill: bool) -> None:
    mask = np.full((64, 48), fill)
    scribble = scribble_from_mask(mask, scribble_rng(0, "e"))
    assert not (scribble == (2 if fill else 1)).any()
    assert (scribble == (1 if fill else 2)).any()


def test_sal_data_scribbles_links_the_source_and_trains(tmp_path: Path) -> None:
    root = noise_photo_folder(tmp_path / "src", _mask(48, 64).astype(np.uint8) * 200, n=6, seed=0)
    out = tmp_path / "scr"
    result = CliRunner().invoke(sal_data, ["scribbles", "--data", str(root), "--split", "train", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in (out / "scribble").iterdir()) == ["0", "1", "2", "3"]
    assert (out / "img").is_symlink() and (out / "gt").is_symlink() and (out / "train.txt").is_symlink()
    assert check_dataset(out, "train")["samples"] == 4  # also checks strokes against the masks
    first = np.asarray(Image.open(out / "scribble" / "2.png"))
    again = tmp_path / "again"
    CliRunner().invoke(sal_data, ["scribbles", "--data", str(root), "--split", str(root / "train.txt"), "--out", str(again)])
    assert np.array_equal(first, np.asarray(Image.open(again / "scribble" / "2.png")))
    item = SaliencyDataset(out, 32, labels="scribble", split="train")[0]
    assert set(item) == {"image", "scribble", "hidden_gt", "stem"}

    from salkit.train.coop.cli import main as train_coop

    run = CliRunner().invoke(train_coop, ["--scribble", "--data", str(out), "--split", "train", "--out", str(tmp_path / "r"),
                                          "--preset", "tiny", "--size", "32", "--batch-size", "2", "--max-steps", "1",
                                          "--grid-every", "0", "--no-progress", "--threads", "1"])
    assert run.exit_code == 0, run.output
    assert "data: 4 samples" in run.output

    links = tmp_path / "links"
    result = CliRunner().invoke(sal_data, ["link-split", "--data", str(root), "--split", "train", "--out", str(links)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (links / "img").iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert all(p.is_symlink() for p in (links / "gt").iterdir())
