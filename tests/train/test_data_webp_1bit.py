"""DUTS-TR as shared here: WebP photographs and 1-bit PNG masks, read like any other layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.train.data.dataset import SaliencyDataset

DUTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "duts-tr"


def _duts_like(root: Path, n: int = 3) -> list[np.ndarray]:
    """``n`` WebP photos with 1-bit PNG masks (a bright disc on a dark ground); returns the masks."""
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    masks = []
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(n):
        mask = (yy - 24) ** 2 + (xx - 20 - 10 * i) ** 2 < 12**2
        photo = np.where(mask[..., None], 220, 30).astype(np.uint8).repeat(3, axis=2)
        Image.fromarray(photo).save(root / "img" / f"s{i}.webp", quality=90)
        Image.fromarray(mask).convert("1").save(root / "gt" / f"s{i}.png")
        masks.append(mask)
    (root / "train.txt").write_text("".join(f"s{i}\n" for i in range(n)))
    return masks


def test_webp_photos_and_one_bit_masks_load(tmp_path: Path) -> None:
    masks = _duts_like(tmp_path)
    with Image.open(tmp_path / "gt" / "s0.png") as m:
        assert m.mode == "1"  # the format the shared DUTS-TR uses
    dataset = SaliencyDataset(tmp_path, 64, labels="mask", split="train", augment=False)
    assert len(dataset) == 3
    item = dataset[1]
    # (48, 64) → (64, 64): the disc stays where it is, in proportion; masks are 0/1 after binarising
    expected = np.asarray(Image.fromarray(masks[1].astype(np.uint8) * 255).resize((64, 64), Image.BILINEAR)) >= 128
    got = item["mask"][0].numpy() > 0.5
    assert set(np.unique(item["mask"].numpy())) <= {0.0, 1.0}
    assert (got == expected).mean() > 0.99
    image = item["image"].numpy()
    assert image[:, got].mean() > image[:, ~got].mean() + 1.0  # the bright disc is where its mask is


def test_a_mask_of_another_size_is_named(tmp_path: Path) -> None:
    _duts_like(tmp_path)
    Image.fromarray(np.zeros((10, 10), bool)).convert("1").save(tmp_path / "gt" / "s2.png")
    with pytest.raises(SalkitError, match=r"s2\.png.*s2\.webp|s2\.webp.*s2\.png"):
        SaliencyDataset(tmp_path, 64, labels="mask", augment=False)


def test_sal_data_check_names_an_unreadable_photo_in_one_line(tmp_path: Path) -> None:
    _duts_like(tmp_path)
    (tmp_path / "img" / "s1.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPbroken")
    exe = Path(sys.executable).with_name("sal-data")
    result = subprocess.run([str(exe), "check", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "s1.webp" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not (DUTS / "train.txt").is_file(), reason=f"DUTS-TR is not at {DUTS} (see ../shared/data/README.md)")
def test_sal_data_check_passes_on_a_slice_of_the_shared_duts_tr(tmp_path: Path) -> None:
    ids = (DUTS / "train.txt").read_text().split()
    split = tmp_path / "slice.txt"
    split.write_text("\n".join(ids[:: len(ids) // 40]) + "\n")  # 40 ids spread over the set
    exe = Path(sys.executable).with_name("sal-data")
    result = subprocess.run([str(exe), "check", str(DUTS), "--split", str(split)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ok: 4" in result.stdout
