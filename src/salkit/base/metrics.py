"""Saliency metrics through PySODMetrics, the field's standard implementation.

Conventions (those of the standard evaluation toolkits):

- A prediction is resized to its ground truth's size (bilinear), then min-max scaled per image
  (MATLAB's ``mapminmax``; disable with ``minmax=False``) before the metrics.
- Ground truth is binarised: uint8 maps at > 128 (0/1 maps at > 0), float maps at > 0.5.
- F-measures use β² = 0.3; weighted F uses PySODMetrics' default β = 1.
- Mean / max F and E are the mean / max over the 256 thresholds of the curve averaged over images.

``binary_ratio`` (not in PySODMetrics) is the share of prediction pixels below 0.1 or above 0.9,
measured on the prediction as given (before min-max scaling): how decided the map is.

PySODMetrics (and through it OpenCV and scikit-image) is imported only when metrics are computed.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from salkit.base.atomic import atomic_write_bytes
from salkit.base.errors import SalkitError
from salkit.base.images import check_map, decode_gray, pair_by_stem, resize_map

F_BETA2 = 0.3
SCALARS = (
    "mae", "s_measure", "weighted_f", "mean_f", "max_f", "adaptive_f", "mean_e", "max_e", "adaptive_e", "binary_ratio",
)


def _prediction01(pred: object, name: str) -> np.ndarray:
    """A prediction as float64 in [0, 1]: uint8 is divided by 255, floats must already be in [0, 1]."""
    if isinstance(pred, np.ndarray) and pred.dtype == np.uint8:
        return check_map(pred, name) / 255.0
    values = check_map(pred, name)
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise SalkitError(f"{name} must lie in [0, 1] (or be uint8), got values in [{low:.4g}, {high:.4g}]")
    return values


def _ground_truth(gt: object, name: str) -> np.ndarray:
    if isinstance(gt, np.ndarray) and gt.dtype == np.bool_:
        return check_map(gt, name) > 0.5
    values = check_map(gt, name)
    if isinstance(gt, np.ndarray) and gt.dtype.kind in "ui":
        return values > (128 if values.max() > 1 else 0)
    return values > 0.5


def _minmax(pred: np.ndarray) -> np.ndarray:
    low, high = pred.min(), pred.max()
    return (pred - low) / (high - low) if high != low else pred


def _pair(pred_raw: object, gt_raw: object, label: str, minmax: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pair under the protocol: (prediction in [0, 1] at the gt's size, the map the metrics see, binary gt)."""
    gt = _ground_truth(gt_raw, f"ground truth of {label}")
    pred = _prediction01(pred_raw, f"prediction of {label}")
    if pred.shape != gt.shape:
        pred = np.clip(resize_map(pred, gt.shape).astype(np.float64), 0.0, 1.0)
    return pred, (_minmax(pred) if minmax else pred), gt


def _check_pairs(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], names: Sequence[str] | None) -> list[str]:
    if len(preds) != len(gts):
        raise SalkitError(f"got {len(preds)} predictions but {len(gts)} ground truths")
    if len(preds) == 0:
        raise SalkitError("nothing to evaluate: no prediction/ground-truth pairs")
    return list(names) if names is not None else [f"pair {i}" for i in range(len(preds))]


def per_image_scores(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], *, names: Sequence[str] | None = None, minmax: bool = True
) -> dict[str, np.ndarray]:
    """Each pair's own MAE and S-measure, ``(n,)`` arrays under :func:`evaluate_arrays`' protocol.

    Their means are ``evaluate_arrays``' ``mae`` and ``s_measure`` (PySODMetrics averages both over
    images), so a paired comparison of two models per photo judges what the table reports.
    """
    labels = _check_pairs(preds, gts, names)
    import py_sod_metrics as sod

    mae, s = np.empty(len(labels)), np.empty(len(labels))
    for i, (pred_raw, gt_raw, label) in enumerate(zip(preds, gts, labels, strict=True)):
        _, scaled, gt = _pair(pred_raw, gt_raw, label, minmax)
        one_mae, one_s = sod.MAE(), sod.Smeasure()
        one_mae.step(pred=scaled, gt=gt, normalize=False)
        one_s.step(pred=scaled, gt=gt, normalize=False)
        mae[i], s[i] = one_mae.get_results()["mae"], one_s.get_results()["sm"]
    return {"mae": mae, "s_measure": s}


def evaluate_arrays(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    minmax: bool = True,
) -> dict[str, object]:
    """Metrics of predictions against ground truths (2-D arrays, paired by position).

    ``preds``: float in [0, 1] or uint8 0..255, any size (resized to the gt's). ``gts``: bool,
    uint8 (0/255 or 0/1) or float in [0, 1]. ``names`` label the pairs in error messages.
    Returns the scalars in :data:`SCALARS` as floats, ``n_images``, and ``curves`` (lists over
    the 256 thresholds in increasing order: ``threshold``, ``precision``, ``recall``, ``f``, ``e``).
    """
    labels = _check_pairs(preds, gts, names)

    import py_sod_metrics as sod

    fm = sod.FmeasureV2(
        metric_handlers={
            "f": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=F_BETA2),
            "precision": sod.PrecisionHandler(with_dynamic=True, with_adaptive=False),
            "recall": sod.RecallHandler(with_dynamic=True, with_adaptive=False),
        }
    )
    mae, sm, wfm, em = sod.MAE(), sod.Smeasure(), sod.WeightedFmeasure(), sod.Emeasure()
    decided = 0
    pixels = 0
    for pred_raw, gt_raw, label in zip(preds, gts, labels, strict=True):
        pred, scaled, gt = _pair(pred_raw, gt_raw, label, minmax)
        decided += int(np.count_nonzero((pred < 0.1) | (pred > 0.9)))
        pixels += pred.size
        for metric in (fm, mae, sm, wfm, em):
            metric.step(pred=scaled, gt=gt, normalize=False)

    f_results = fm.get_results()
    e_results = em.get_results()["em"]
    # PySODMetrics orders curves from threshold 255 down to 0; flip to increasing thresholds.
    f_curve = np.flip(f_results["f"]["dynamic"])
    e_curve = np.flip(e_results["curve"])
    results: dict[str, object] = {
        "n_images": len(preds),
        "mae": float(mae.get_results()["mae"]),
        "s_measure": float(sm.get_results()["sm"]),
        "weighted_f": float(wfm.get_results()["wfm"]),
        "mean_f": float(f_curve.mean()),
        "max_f": float(f_curve.max()),
        "adaptive_f": float(f_results["f"]["adaptive"]),
        "mean_e": float(e_curve.mean()),
        "max_e": float(e_curve.max()),
        "adaptive_e": float(e_results["adp"]),
        "binary_ratio": decided / pixels,
        "curves": {
            "threshold": (np.arange(256) / 255.0).tolist(),
            "precision": np.flip(f_results["precision"]["dynamic"]).tolist(),
            "recall": np.flip(f_results["recall"]["dynamic"]).tolist(),
            "f": f_curve.tolist(),
            "e": e_curve.tolist(),
        },
    }
    return results


def evaluate_dirs(pred_dir: str | os.PathLike[str], gt_dir: str | os.PathLike[str], *, minmax: bool = True) -> dict[str, object]:
    """Metrics of a folder of predicted maps against a folder of masks, paired by file stem.

    Side maps beside the predictions (``x_uncertainty.png`` next to ``x.png``, as ``sal-runtime
    predict --uncertainty`` writes them) are skipped; any other unpaired file is an error.
    """
    pairs = pair_by_stem(
        pred_dir, gt_dir, what_a="prediction folder", what_b="ground-truth folder", skip_companions_in_a=True
    )
    preds = [decode_gray(pred) for pred, _ in pairs]
    gts = [decode_gray(gt) for _, gt in pairs]
    names = [f"{pred} vs {gt}" for pred, gt in pairs]
    results = evaluate_arrays(preds, gts, names=names, minmax=minmax)
    results["pred_dir"], results["gt_dir"] = str(pred_dir), str(gt_dir)
    return results


def format_table(results: dict[str, object]) -> str:
    """The scalar metrics as a two-column text table."""
    width = max(len(key) for key in SCALARS)
    lines = [f"{'images':<{width}}  {results['n_images']}"]
    lines += [f"{key:<{width}}  {float(results[key]):.4f}" for key in SCALARS]
    return "\n".join(lines)


def render_curves_png(results: dict[str, object], title: str = "") -> bytes:
    """PR curve and F-/E-measure-vs-threshold curves as PNG bytes (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    curves = results["curves"]
    assert isinstance(curves, dict)
    fig = Figure(figsize=(10, 4.2), dpi=100)
    pr, thr = fig.subplots(1, 2)
    pr.plot(curves["recall"], curves["precision"], color="tab:blue")
    pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall")
    pr.grid(alpha=0.3)
    thr.plot(curves["threshold"], curves["f"], label=f"F (β²={F_BETA2}), max {results['max_f']:.3f}", color="tab:orange")
    thr.plot(curves["threshold"], curves["e"], label=f"E-measure, max {results['max_e']:.3f}", color="tab:green")
    thr.set(xlabel="threshold", ylabel="score", xlim=(0, 1), ylim=(0, 1.02), title="score vs threshold")
    thr.grid(alpha=0.3)
    thr.legend(loc="lower center")
    fig.suptitle(title or f"{results['n_images']} images: MAE {results['mae']:.4f}, S {results['s_measure']:.3f}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_reports(results: dict[str, object], *, json_path: str | os.PathLike[str] | None, plot_path: str | os.PathLike[str] | None) -> None:
    """Write the JSON report and/or the curve plot, each atomically; both are rendered before either is written."""
    payloads: list[tuple[Path, bytes]] = []
    if plot_path is not None:
        payloads.append((Path(plot_path), render_curves_png(results)))
    if json_path is not None:
        payloads.append((Path(json_path), (json.dumps(results, indent=2) + "\n").encode("utf-8")))
    for path, data in payloads:
        atomic_write_bytes(path, data)

