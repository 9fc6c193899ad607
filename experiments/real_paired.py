"""Photo by photo: does one row's map beat another's on the same test photographs of one run?

A table's mean over 170 photographs can move by a few thousandths either way by chance. Pairing
the two rows photo by photo (each photo's own MAE and S under the table's protocol,
``salkit.base.metrics.per_image_scores``) gives, per claim and run, the share of photographs the
claim holds on and a bootstrap 95 % interval of the mean difference (BCa over photographs,
``scipy.stats.bootstrap``, fixed seed). An interval that excludes 0 is a difference this test set
shows; one that straddles 0 is not.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError

CONFIDENCE = 0.95
RESAMPLES = 9999


@lru_cache(maxsize=None)
def photo_scores(maps: Path, gt: Path) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """The stems and each photo's MAE and S of the map folder ``maps`` against the masks in ``gt``."""
    from salkit.base.images import decode_gray, pair_by_stem
    from salkit.base.metrics import per_image_scores

    if not maps.is_dir():
        raise SalkitError(f"{maps} is not a folder of maps (run experiments/real.py's maps stage first)")
    pairs = pair_by_stem(maps, gt, what_a="map folder", what_b="ground-truth folder", skip_companions_in_a=True)
    stems = tuple(p.stem for p, _ in pairs)
    scores = per_image_scores([decode_gray(p) for p, _ in pairs], [decode_gray(g) for _, g in pairs],
                              names=[f"{p} vs {g}" for p, g in pairs])
    return stems, scores


def interval(deltas: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The bootstrap interval of the mean of ``deltas`` (n,); a constant sample's is that constant."""
    if np.ptp(deltas) == 0.0:  # every resample has the same mean: BCa's acceleration would be 0/0
        return float(deltas[0]), float(deltas[0])
    from scipy.stats import bootstrap

    result = bootstrap((deltas,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="BCa",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired(run: Path, ours: str, base: str, lower_is_better: set[str]) -> dict[str, Any]:
    """``ours`` against ``base`` (map folder names under ``run/maps``) on ``run/test/gt``'s photographs."""
    # Both folders pair one to one with the same masks (pair_by_stem refuses any unmatched file), in stem order.
    stems, a = photo_scores(run / "maps" / ours, run / "test" / "gt")
    _, b = photo_scores(run / "maps" / base, run / "test" / "gt")
    out: dict[str, Any] = {"n": len(stems)}
    for key in ("mae", "s_measure"):
        deltas = a[key] - b[key]  # (n,): ours − base, photo by photo
        better = deltas < 0 if key in lower_is_better else deltas > 0
        low, high = interval(deltas)
        out[key] = {"mean": float(deltas.mean()), "ci": [low, high], "better_share": float(better.mean())}
    return out
