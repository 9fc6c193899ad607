"""experiments/real_paired.py: photo-by-photo comparisons, checked against numpy and the normal approximation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

from real_paired import interval, paired, photo_scores  # noqa: E402 — after experiments/ is put on sys.path

from salkit.base.errors import SalkitError  # noqa: E402 — after experiments/ is put on sys.path


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _run(tmp_path: Path, n: int = 24) -> tuple[Path, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A run folder: masks, a blurry 'base' map per photo, and 'ours' — sharper on the first 2/3 of the photos,
    noisier on the rest."""
    rng = np.random.default_rng(0)
    gts, base, ours = [], [], []
    for i in range(n):
        h, w = 24 + i % 5, 32 - i % 3
        yy, xx = np.mgrid[0:h, 0:w]
        gt = (yy - h / 2) ** 2 + (xx - rng.uniform(8, w - 8)) ** 2 < rng.uniform(4, 8) ** 2
        soft = np.clip(0.5 * gt + 0.25 + rng.normal(0, 0.1, gt.shape), 0, 1)
        better = np.clip(0.8 * gt + 0.1 + rng.normal(0, 0.05, gt.shape), 0, 1)
        worse = np.clip(soft + rng.normal(0, 0.25, gt.shape), 0, 1)
        mine = better if i < 2 * n // 3 else worse
        for folder, m, keep in (("maps/base", soft, base), ("maps/ours", mine, ours)):
            u8 = (255 * m).astype(np.uint8)
            _save(tmp_path / folder / f"p{i:02d}.png", u8)
            keep.append(u8)
        _save(tmp_path / "test" / "gt" / f"p{i:02d}.png", gt.astype(np.uint8) * 255)
        gts.append(gt)
    return tmp_path, gts, base, ours


def _mae(pred_u8: np.ndarray, gt: np.ndarray) -> float:
    """The protocol by hand: min-max scaled map against the binary mask."""
    p = pred_u8 / 255.0
    p = (p - p.min()) / (p.max() - p.min())
    return float(np.abs(p - gt).mean())


def test_paired_deltas_and_shares_equal_a_hand_computation(tmp_path: Path) -> None:
    run, gts, base, ours = _run(tmp_path)
    result = paired(run, "ours", "base", {"mae"})
    deltas = np.array([_mae(o, g) - _mae(b, g) for o, b, g in zip(ours, base, gts, strict=True)])
    assert result["n"] == 24
    assert result["mae"]["mean"] == pytest.approx(deltas.mean(), abs=1e-9)
    assert result["mae"]["better_share"] == pytest.approx((deltas < 0).mean())
    assert 0.5 < result["mae"]["better_share"] < 1.0  # the worse third shows
    low, high = result["mae"]["ci"]
    assert low < result["mae"]["mean"] < high
    assert 0.0 <= result["s_measure"]["better_share"] <= 1.0


def test_interval_is_the_normal_one_on_a_large_sample_and_a_point_on_a_constant_one() -> None:
    deltas = np.random.default_rng(1).normal(-0.01, 0.02, 400)
    low, high = interval(deltas)
    half = 1.96 * deltas.std(ddof=1) / np.sqrt(deltas.size)  # the CLT interval, independent of the bootstrap
    assert (low + high) / 2 == pytest.approx(deltas.mean(), abs=0.15 * half)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert interval(np.full(7, -0.25)) == (-0.25, -0.25)


def test_maps_of_other_photos_or_no_maps_are_refused(tmp_path: Path) -> None:
    run, *_ = _run(tmp_path, n=4)
    (run / "maps" / "base" / "p03.png").rename(run / "maps" / "base" / "p99.png")
    photo_scores.cache_clear()
    with pytest.raises(SalkitError, match="unmatched files"):
        paired(run, "ours", "base", {"mae"})
    with pytest.raises(SalkitError, match="is not a folder of maps"):
        paired(run, "ours", "nothing", {"mae"})
