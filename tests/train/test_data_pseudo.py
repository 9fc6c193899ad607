"""Scribble boosting: a first model's confident maps widen the strokes; the strokes keep their labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from salkit.base.errors import SalkitError
from salkit.train.data.cli import main as sal_data
from salkit.train.data.dataset import SaliencyDataset
from salkit.train.data.pseudo import pseudo_scribble, write_pseudo_scribbles
from tests.fixtures.data import noise_photo_folder


def _expected(saliency: np.ndarray, strokes: np.ndarray, low: float, high: float) -> np.ndarray:
    """The rule pixel by pixel, written out as a loop."""
    out = np.zeros(strokes.shape, np.uint8)
    for index in np.ndindex(strokes.shape):
        if strokes[index]:
            out[index] = strokes[index]
        elif saliency[index] >= high:
            out[index] = 1
        elif saliency[index] <= low:
            out[index] = 2
    return out


def test_confident_pixels_labelled_and_strokes_win() -> None:
    rng = np.random.default_rng(0)
    saliency = rng.random((23, 31)).astype(np.float32)
    strokes = rng.choice([0, 0, 0, 1, 2], size=(23, 31)).astype(np.uint8)
    saliency[0, :4], strokes[0, :4] = [0.95, 0.05, 0.3, 0.7], [2, 1, 0, 0]  # strokes against the map; the bounds
    got = pseudo_scribble(saliency, strokes, 0.3, 0.7)
    assert np.array_equal(got, _expected(saliency, strokes, 0.3, 0.7))
    assert got[0, :4].tolist() == [2, 1, 2, 1]
    assert 0 < (got == 0).mean() < 1 and set(np.unique(got).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("low, high", [(0.7, 0.3), (-0.1, 0.5), (0.5, 1.5), (0.5, 0.5)])
def test_thresholds_out_of_order_are_refused(low: float, high: float) -> None:
    with pytest.raises(SalkitError, match="thresholds"):
        pseudo_scribble(np.zeros((4, 4)), np.zeros((4, 4), np.uint8), low, high)


def test_a_map_of_another_size_is_refused() -> None:
    with pytest.raises(SalkitError, match="shape"):
        pseudo_scribble(np.zeros((4, 5)), np.zeros((4, 4), np.uint8), 0.3, 0.7)


def _stroke_folder(tmp_path: Path) -> Path:
    mask = np.zeros((40, 56), np.uint8)
    mask[10:30, 15:40] = 255
    root = noise_photo_folder(tmp_path / "src", mask, n=4, seed=1)
    strokes = tmp_path / "strokes"
    result = CliRunner().invoke(sal_data, ["scribbles", "--data", str(root), "--split", "train", "--out", str(strokes)])
    assert result.exit_code == 0, result.output
    return strokes


def test_written_folder_holds_the_rule_and_trains(tmp_path: Path) -> None:
    strokes = _stroke_folder(tmp_path)
    seen: list[tuple[int, ...]] = []

    def maps(photos: list[np.ndarray]) -> list[np.ndarray]:  # a left-to-right ramp at each photo's own size
        seen.extend(p.shape for p in photos)
        return [np.tile(np.linspace(0, 1, p.shape[1], dtype=np.float32), (p.shape[0], 1)) for p in photos]

    out = tmp_path / "pseudo"
    stats = write_pseudo_scribbles(strokes, "train", maps, out, low=0.25, high=0.75)
    assert seen == [(40, 56, 3)] * 4 and stats["images"] == 4
    ramp = maps([np.zeros((40, 56, 3), np.uint8)])[0]
    for i in range(4):
        drawn = np.asarray(Image.open(strokes / "scribble" / f"{i}.png"))
        assert np.array_equal(np.asarray(Image.open(out / "scribble" / f"{i}.png")), _expected(ramp, drawn, 0.25, 0.75))
    labelled = np.stack([np.asarray(Image.open(out / "scribble" / f"{i}.png")) for i in range(4)])
    assert stats["foreground_fraction"] == pytest.approx((labelled == 1).mean())
    assert stats["background_fraction"] == pytest.approx((labelled == 2).mean())
    assert (out / "img").is_symlink() and (out / "train.txt").is_symlink()
    assert set(SaliencyDataset(out, 32, labels="scribble", split="train")[0]) == {"image", "scribble", "hidden_gt", "stem"}

    from salkit.train.coop.cli import main as train_coop

    run = CliRunner().invoke(train_coop, ["--scribble", "--data", str(out), "--split", "train", "--out", str(tmp_path / "r"),
                                          "--preset", "tiny", "--size", "32", "--batch-size", "2", "--max-steps", "1",
                                          "--grid-every", "0", "--no-progress", "--threads", "1"])
    assert run.exit_code == 0, run.output


def test_a_failing_map_leaves_nothing_behind(tmp_path: Path) -> None:
    strokes = _stroke_folder(tmp_path)
    calls = []

    def maps(photos: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(1)
        if len(calls) == 3:
            return [np.zeros((2, 2), np.float32)]  # the wrong size
        return [np.zeros(p.shape[:2], np.float32) for p in photos]

    with pytest.raises(SalkitError, match="shape"):
        write_pseudo_scribbles(strokes, "train", maps, tmp_path / "pseudo", low=0.3, high=0.7)
    assert not (tmp_path / "pseudo").exists() and not list(tmp_path.glob(".pseudo*"))
