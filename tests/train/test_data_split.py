"""Split files (PASCAL-S layout), the > 128 mask convention, EXIF-rotated samples, and bad input at the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.base.layout import binarise_mask, check_dataset, read_split, split_samples
from salkit.train.data.dataset import SaliencyDataset

RNG = np.random.default_rng(3)


def _photo(h: int, w: int) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture()
def pascal_like(tmp_path: Path) -> Path:
    """Seven photos of mixed sizes with graded masks (0, 21, 85, 170, 255), split 5 train / 2 test."""
    root = tmp_path / "pascal"
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    for i in range(1, 8):
        h, w = (30, 40) if i % 2 else (40, 28)
        _photo(h, w).save(root / "img" / f"{i}.jpg")
        mask = np.zeros((h, w), np.uint8)
        mask[5:20, 5:20] = 255  # certain object
        mask[20:25, 5:20] = 85  # a third of the annotators: background under > 128
        mask[0:5, 0:10] = 170  # two thirds: foreground
        Image.fromarray(mask).save(root / "gt" / f"{i}.png")
    (root / "train.txt").write_text("1\n2\n\n3  # comment\n4\n6\n")
    (root / "test.txt").write_text("5\n7\n")
    return root


def test_split_keeps_listed_ids_in_file_order(pascal_like: Path, tmp_path: Path) -> None:
    assert [s.stem for s in split_samples(pascal_like, "train")] == ["1", "2", "3", "4", "6"]
    assert [s.stem for s in split_samples(pascal_like, "test")] == ["5", "7"]
    other = tmp_path / "mine.txt"
    other.write_text("7\n1\n")
    assert [s.stem for s in split_samples(pascal_like, other)] == ["7", "1"]
    assert read_split(pascal_like, "test")[0] == pascal_like / "test.txt"
    ds = SaliencyDataset(pascal_like, 32, split="test")
    assert len(ds) == 2 and ds[1]["stem"] == "7" and "split test" in ds.describe() and "skipped 0" in ds.describe()


def test_graded_masks_are_binarised_above_128(pascal_like: Path) -> None:
    gray = np.asarray(Image.open(pascal_like / "gt" / "1.png"))
    fg = binarise_mask(gray)
    assert fg[10, 10] and fg[2, 2] and not fg[22, 10] and not fg[28, 35]
    assert np.array_equal(binarise_mask(np.array([[0, 1]], np.uint8)), [[False, True]])  # 0/1 masks
    item = SaliencyDataset(pascal_like, 40, split=["train", "test"][1])[0]  # 5.jpg is 30×40
    resized = np.asarray(Image.fromarray(fg.astype(np.uint8) * 255).resize((40, 40), Image.BILINEAR)) >= 128
    assert np.array_equal(item["mask"][0].numpy(), resized)
    assert check_dataset(pascal_like, "train")["non_binary_masks"] == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "lists no ids"), ("# nothing\n\n", "lists no ids"), ("1\n2\n1\n", "repeats ids: 1"),
     ("1\n99\n", r"ids without their files: .*img/99\.\*")],
)
def test_bad_split_files_name_the_problem(pascal_like: Path, content: str, message: str) -> None:
    (pascal_like / "train.txt").write_text(content)
    with pytest.raises(SalkitError, match=message):
        SaliencyDataset(pascal_like, 32, split="train")


def test_missing_split_file(pascal_like: Path) -> None:
    with pytest.raises(SalkitError, match="neither a file nor .*val.txt"):
        split_samples(pascal_like, "val")


def test_exif_rotated_photo_pairs_with_a_mask_in_display_orientation(pascal_like: Path) -> None:
    photo = _photo(30, 40)  # stored 30×40, displayed 40×30 (orientation 6 = rotate 90°)
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(pascal_like / "img" / "3.jpg", exif=exif.tobytes())
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(pascal_like / "gt" / "3.png")
    assert len(SaliencyDataset(pascal_like, 32, split="train")) == 5
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(pascal_like / "gt" / "3.png")  # stored orientation: wrong
    with pytest.raises(SalkitError, match=r"gt/3.png is \(30, 40\) but .*img/3.jpg is \(40, 30\)"):
        SaliencyDataset(pascal_like, 32, split="train")


def _train_coop(*args: object):
    from salkit.train.coop.cli import main

    base = ["--preset", "tiny", "--size", "32", "--batch-size", "2", "--max-steps", "1", "--grid-every", "0",
            "--no-progress", "--threads", "1"]
    return CliRunner().invoke(main, [*map(str, args), *base])


@pytest.mark.parametrize("problem", ["unreadable image", "mask of the wrong size", "empty split", "unknown split"])
def test_train_coop_bad_data_one_line_exit_2(pascal_like: Path, tmp_path: Path, problem: str) -> None:
    split, named = "train", ""
    if problem == "unreadable image":
        (pascal_like / "img" / "4.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        named = "4.jpg"
    elif problem == "mask of the wrong size":
        Image.new("L", (9, 9)).save(pascal_like / "gt" / "2.png")
        named = "2.png"
    elif problem == "empty split":
        (pascal_like / "train.txt").write_text("\n")
        named = "train.txt"
    else:
        split, named = "val", "val.txt"
    result = _train_coop("--data", pascal_like, "--split", split, "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.output
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_coop_on_a_split_logs_the_sample_count(pascal_like: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = _train_coop("--data", pascal_like, "--split", "train", "--out", tmp_path / "run", "--crop", "0.8")
    assert result.exit_code == 0, result.output
    assert f"data: 5 samples from {pascal_like} (split train); skipped 0" in result.output
    assert (tmp_path / "run" / "last.pt").is_file()
