"""Numbers → verdicts for the reproduction harness (no torch; pure numpy).

A claim is a list of **checks**. Each check compares two rows of the claim's table on one metric,
seed by seed, in the direction the paper claims:

- ``kind="better"``: row ``a`` beats row ``b`` (lower for MAE-like metrics, higher otherwise);
- ``kind="ratio"``: ``a / b ≥ threshold`` for higher-is-better metrics (``b / a`` for lower-is-better),
  "a reaches a share of b" (weak supervision);
- ``kind="above"``: row ``a`` exceeds the constant ``threshold`` (AUROC > 0.5).

A check holds in a seed or not; its verdict over seeds is ``yes`` (every seed), ``no`` (no seed, or
the mean against the claim) or ``mixed k/n``. A claim's verdict: ``yes`` if every check says yes,
``no`` if every check says no, ``partly`` otherwise. Ties count against the claim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

LOWER_IS_BETTER = frozenset({"mae", "residual_median", "residual_mean"})


@dataclass(frozen=True)
class Check:
    metric: str
    a: str
    b: str | None = None
    kind: str = "better"  # "better" | "ratio" | "above"
    threshold: float = 0.0

    def describe(self) -> str:
        if self.kind == "above":
            return f"{self.a} {self.metric} > {self.threshold:g}"
        if self.kind == "ratio":
            return f"{self.a} reaches {self.threshold:.0%} of {self.b} on {self.metric}"
        op = "<" if self.metric in LOWER_IS_BETTER else ">"
        return f"{self.a} {op} {self.b} on {self.metric}"


def holds(check: Check, a: float, b: float | None) -> bool:
    """Whether the check holds for one seed's numbers (NaN never holds)."""
    if not np.isfinite(a) or (check.kind != "above" and (b is None or not np.isfinite(b))):
        return False
    lower = check.metric in LOWER_IS_BETTER
    if check.kind == "above":
        return a < check.threshold if lower else a > check.threshold
    assert b is not None
    if check.kind == "better":
        return a < b if lower else a > b
    if check.kind == "ratio":
        if lower:
            return a > 0 and b / a >= check.threshold
        return b > 0 and a / b >= check.threshold
    raise ValueError(f"unknown check kind {check.kind!r}")


def check_verdict(check: Check, per_seed: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """``per_seed``: one ``{row: {metric: value}}`` per seed → the check's verdict and counts."""
    passes = []
    for rows in per_seed:
        a = float(rows[check.a][check.metric])
        b = float(rows[check.b][check.metric]) if check.b is not None else None
        passes.append(holds(check, a, b))
    mean_rows = {row: {check.metric: float(np.mean([r[row][check.metric] for r in per_seed]))}
                 for row in {check.a, check.b} - {None}}
    mean_holds = holds(check, mean_rows[check.a][check.metric],
                       mean_rows[check.b][check.metric] if check.b is not None else None)
    n, k = len(passes), int(sum(passes))
    if n and k == n:
        verdict = "yes"
    elif k == 0 or not mean_holds:
        verdict = "no"
    else:
        verdict = f"mixed {k}/{n}"
    return {**asdict(check), "text": check.describe(), "seeds_holding": k, "seeds": n, "verdict": verdict}


def claim_verdict(check_results: Sequence[Mapping[str, Any]]) -> str:
    verdicts = [c["verdict"] for c in check_results]
    if verdicts and all(v == "yes" for v in verdicts):
        return "yes"
    if verdicts and all(v == "no" for v in verdicts):
        return "no"
    return "partly"


def summarise_rows(per_seed: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample std (ddof 1; 0 for one seed) of every row's metrics over seeds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in per_seed[0]:
        out[row] = {}
        for metric in per_seed[0][row]:
            values = np.array([float(r[row][metric]) for r in per_seed], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[row][metric] = {"mean": float(values.mean()), "std": std}
    return out


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` detecting ``labels`` (bool): the Mann–Whitney U
    statistic over average ranks, so tied scores count one half. NaN when one class is empty."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average rank of each tie group: groups are runs of equal values in the sorted scores.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    average = (starts + ends + 1) / 2.0  # 1-based ranks start+1 … end, averaged
    ranks[order] = np.repeat(average, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def format_stat(stat: Mapping[str, float], digits: int = 3) -> str:
    mean, std = stat["mean"], stat["std"]
    if 0 < abs(mean) < 10 ** (1 - digits):  # fixed point would print 0.000 (relative residuals ~1e-4)
        return f"{mean:.3g} ± {std:.2g}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_claim(name: str, claim: Mapping[str, Any]) -> str:
    """One claim as a Markdown section: rows × metrics (mean ± std), then checks with verdicts."""
    rows = claim["rows"]
    metrics = claim["metrics"]
    lines = [f"### {name}: {claim['title']} — reproduced? **{claim['verdict']}**", ""]
    if claim.get("note"):
        lines += [claim["note"], ""]
    if rows:
        lines.append("| row | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for row, stats in rows.items():
            lines.append(f"| {row} | " + " | ".join(format_stat(stats[m], 4 if m == "mae" else 3) for m in metrics) + " |")
        lines.append("")
    for check in claim["checks"]:
        lines.append(f"- {check['text']}: **{check['verdict']}** ({check['seeds_holding']}/{check['seeds']} seeds)")
    return "\n".join(lines) + "\n"
