"""Dataset layouts: DUTS pairs, S-DUTS scribbles, plain folders, and the errors that list files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.base.layout import check_dataset, duts_samples, image_folder, read_scribble, scribble_samples


@pytest.fixture()
def dataset(synthetic_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the shared synthetic dataset, free to break."""
    return Path(shutil.copytree(synthetic_dataset, tmp_path / "data"))


def test_duts_pairs_by_stem(synthetic_dataset: Path) -> None:
    samples = duts_samples(synthetic_dataset)
    assert [s.stem for s in samples] == sorted(p.stem for p in (synthetic_dataset / "img").iterdir())
    assert len(samples) == 12
    for s in samples:
        assert s.image.suffix == ".jpg" and s.mask is not None and s.mask.suffix == ".png"
        assert s.image.stem == s.mask.stem == s.stem and s.scribble is None


def test_scribble_layout_includes_masks_when_present(synthetic_dataset: Path) -> None:
    samples = scribble_samples(synthetic_dataset)
    assert len(samples) == 12
    assert all(s.scribble is not None and s.scribble.parent.name == "scribble" for s in samples)
    assert all(s.mask is not None and s.mask.stem == s.stem for s in samples)


def test_unmatched_files_are_listed_on_both_sides(dataset: Path) -> None:
    (dataset / "gt" / "synth_00003.png").unlink()
    Image.new("L", (64, 64)).save(dataset / "gt" / "stray.png")
    with pytest.raises(SalkitError) as err:
        duts_samples(dataset)
    message = str(err.value)
    assert "synth_00003.jpg" in message and "stray.png" in message


def test_duts_folder_names_are_recognised(dataset: Path) -> None:
    (dataset / "img").rename(dataset / "DUTS-TR-Image")
    (dataset / "gt").rename(dataset / "DUTS-TR-Mask")
    assert len(duts_samples(dataset)) == 12
    shutil.rmtree(dataset / "DUTS-TR-Mask")
    with pytest.raises(SalkitError, match="no mask folder .*gt"):
        duts_samples(dataset)


def test_size_mismatch_names_both_files(dataset: Path) -> None:
    Image.new("L", (40, 64)).save(dataset / "gt" / "synth_00005.png")
    with pytest.raises(SalkitError) as err:
        duts_samples(dataset)
    assert "synth_00005.png" in str(err.value) and "synth_00005.jpg" in str(err.value)


def test_missing_empty_and_foreign_folders(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(SalkitError, match="does not exist"):
        duts_samples(tmp_path / "nowhere")
    (tmp_path / "empty" / "img").mkdir(parents=True)
    (tmp_path / "empty" / "gt").mkdir()
    with pytest.raises(SalkitError, match="holds no images"):
        duts_samples(tmp_path / "empty")
    (dataset / "img" / "notes.txt").write_text("hello")
    with pytest.raises(SalkitError, match="notes.txt"):
        duts_samples(dataset)


def test_plain_image_folder(dataset: Path) -> None:
    (dataset / "img" / ".hidden").write_text("skipped")
    (dataset / "img" / "sub").mkdir()
    paths = image_folder(dataset / "img")
    assert [p.name for p in paths] == sorted(f"synth_{i:05d}.jpg" for i in range(12))


def test_scribble_values_are_checked(dataset: Path) -> None:
    path = dataset / "scribble" / "synth_00000.png"
    values = read_scribble(path)
    assert set(np.unique(values).tolist()) <= {0, 1, 2}
    palette = Image.fromarray(values).convert("P")  # label maps often come as palette PNGs: indices count
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    palette.save(path)
    assert np.array_equal(read_scribble(path), values)
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(path)  # a 0/255 mask is not a scribble
    with pytest.raises(SalkitError, match="synth_00000.png.*255"):
        read_scribble(path)


def test_check_dataset_reports_and_catches_wrong_side_strokes(dataset: Path) -> None:
    report = check_dataset(dataset)
    assert report["samples"] == 12 and report["masks"] and report["scribbles"]
    assert 0.003 < float(report["scribble_fraction"]) < 0.1
    gt = np.asarray(Image.open(dataset / "gt" / "synth_00002.png"))
    scribble = np.asarray(Image.open(dataset / "scribble" / "synth_00002.png")).copy()
    ys, xs = np.nonzero(gt == 0)
    scribble[ys[0], xs[0]] = 1  # a foreground stroke on background
    Image.fromarray(scribble).save(dataset / "scribble" / "synth_00002.png")
    with pytest.raises(SalkitError, match="synth_00002.png.*wrong side"):
        check_dataset(dataset)


def test_check_dataset_catches_a_corrupt_image(dataset: Path) -> None:
    path = dataset / "img" / "synth_00004.jpg"
    path.write_bytes(path.read_bytes()[: 200])
    with pytest.raises(SalkitError, match="synth_00004.jpg"):
        check_dataset(dataset)
