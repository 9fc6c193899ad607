"""Verdict logic and AUROC of the reproduction harness on synthetic numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from experiments.repro_verdict import Check, auroc, check_verdict, claim_verdict, markdown_claim, summarise_rows


def _seeds(a_values: list[float], b_values: list[float], metric: str = "s_measure") -> list[dict]:
    return [{"A": {metric: a}, "B": {metric: b}} for a, b in zip(a_values, b_values, strict=True)]


def test_better_check_counts_seeds_and_uses_the_metric_direction() -> None:
    higher = Check("s_measure", "A", "B")
    assert check_verdict(higher, _seeds([0.8, 0.7, 0.9], [0.6, 0.6, 0.6]))["verdict"] == "yes"
    mixed = check_verdict(higher, _seeds([0.8, 0.5, 0.9], [0.6, 0.6, 0.6]))
    assert (mixed["verdict"], mixed["seeds_holding"]) == ("mixed 2/3", 2)
    assert check_verdict(higher, _seeds([0.5, 0.5, 0.5], [0.6, 0.6, 0.6]))["verdict"] == "no"
    # One big win cannot hide two losses when the mean goes against the claim... and vice versa.
    assert check_verdict(higher, _seeds([0.61, 0.61, 0.1], [0.6, 0.6, 0.6]))["verdict"] == "no"
    # MAE: lower is better, so the same numbers flip.
    lower = Check("mae", "A", "B")
    assert check_verdict(lower, _seeds([0.1, 0.2, 0.1], [0.3, 0.3, 0.3], "mae"))["verdict"] == "yes"
    assert check_verdict(lower, _seeds([0.4, 0.4, 0.4], [0.3, 0.3, 0.3], "mae"))["verdict"] == "no"


def test_ties_and_nan_count_against_the_claim() -> None:
    check = Check("s_measure", "A", "B")
    assert check_verdict(check, _seeds([0.6, 0.6, 0.6], [0.6, 0.6, 0.6]))["verdict"] == "no"
    assert check_verdict(check, _seeds([float("nan"), 0.9, 0.9], [0.6, 0.6, 0.6]))["verdict"] == "no"  # NaN mean


def test_ratio_and_above_checks() -> None:
    ratio = Check("s_measure", "A", "B", kind="ratio", threshold=0.9)
    assert check_verdict(ratio, _seeds([0.55, 0.56, 0.6], [0.6, 0.6, 0.6]))["verdict"] == "yes"  # ≥ 0.54
    assert check_verdict(ratio, _seeds([0.53, 0.53, 0.53], [0.6, 0.6, 0.6]))["verdict"] == "no"
    mae_ratio = Check("mae", "A", "B", kind="ratio", threshold=0.9)  # A's MAE at most B's / 0.9
    assert check_verdict(mae_ratio, _seeds([0.11, 0.11, 0.11], [0.1, 0.1, 0.1], "mae"))["verdict"] == "yes"
    assert check_verdict(mae_ratio, _seeds([0.12, 0.12, 0.12], [0.1, 0.1, 0.1], "mae"))["verdict"] == "no"
    above = Check("auroc", "A", kind="above", threshold=0.5)
    rows = [{"A": {"auroc": v}} for v in (0.7, 0.45, 0.8)]
    assert check_verdict(above, rows)["verdict"] == "mixed 2/3"


def test_claim_verdict_and_markdown_say_when_a_claim_does_not_reproduce() -> None:
    yes, no = {"verdict": "yes"}, {"verdict": "no"}
    assert claim_verdict([yes, yes]) == "yes"
    assert claim_verdict([no, no]) == "no"
    assert claim_verdict([yes, no]) == "partly"
    assert claim_verdict([yes, {"verdict": "mixed 2/3"}]) == "partly"
    per_seed = _seeds([0.5, 0.5, 0.4], [0.6, 0.6, 0.6])
    checks = [check_verdict(Check("s_measure", "A", "B"), per_seed)]
    claim = {"title": "A beats B", "metrics": ["s_measure"], "rows": summarise_rows(per_seed), "checks": checks,
             "verdict": claim_verdict(checks), "note": ""}
    text = markdown_claim("demo", claim)
    assert "reproduced? **no**" in text and "A > B on s_measure: **no** (0/3 seeds)" in text
    assert "| A | 0.467 ± 0.058 |" in text


def test_summary_is_mean_and_sample_std() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((4, 2))
    per_seed = [{"A": {"m": v[0]}, "B": {"m": v[1]}} for v in values]
    summary = summarise_rows(per_seed)
    assert summary["A"]["m"]["mean"] == pytest.approx(values[:, 0].mean())
    assert summary["B"]["m"]["std"] == pytest.approx(values[:, 1].std(ddof=1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(2000) < 0.2
    scores = np.round(rng.random(2000) + 0.5 * labels, 1)  # rounded: many ties
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auroc(-scores, labels) == pytest.approx(1.0 - roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(auroc(scores, np.zeros_like(labels)))
