"""Evaluation: numbers equal to PySODMetrics called directly, binary ratio, folders, CLI, reports."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import py_sod_metrics as sod
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from salkit.base import metrics as ev
from salkit.base.errors import SalkitError
from salkit.base.metrics import SCALARS, evaluate_arrays, evaluate_dirs
from salkit.runtime.cli.eval import eval_command


def _pairs(n: int = 5, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """uint8 (prediction, ground truth) pairs of varied sizes: blurred, noisy masks as predictions."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for i in range(n):
        h, w = 40 + 7 * i, 56 - 5 * i
        yy, xx = np.mgrid[0:h, 0:w]
        gt = ((yy - rng.uniform(10, h - 10)) ** 2 + (xx - rng.uniform(10, w - 10)) ** 2 < rng.uniform(6, 14) ** 2)
        soft = ndimage.gaussian_filter(gt.astype(float), 2.0) + rng.normal(0, 0.15, gt.shape)
        # 20..220, not 0..255: the per-image min-max scaling of the standard protocol matters
        preds.append((20 + 200 * np.clip(soft, 0, 1)).astype(np.uint8))
        gts.append(gt.astype(np.uint8) * 255)
    return preds, gts


def _reference(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict[str, object]:
    """The metrics the standard way: PySODMetrics on uint8 arrays with its own normalisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the classic Fmeasure class is deprecated but still the reference
        fm = sod.Fmeasure(beta=0.3)
    mae, sm, wfm, em = sod.MAE(), sod.Smeasure(), sod.WeightedFmeasure(), sod.Emeasure()
    for pred, gt in zip(preds, gts, strict=True):
        for metric in (fm, mae, sm, wfm, em):
            metric.step(pred=pred, gt=gt)
    f = fm.get_results()
    e = em.get_results()["em"]
    return {
        "mae": mae.get_results()["mae"], "s_measure": sm.get_results()["sm"], "weighted_f": wfm.get_results()["wfm"],
        "mean_f": f["fm"]["curve"].mean(), "max_f": f["fm"]["curve"].max(), "adaptive_f": f["fm"]["adp"],
        "mean_e": e["curve"].mean(), "max_e": e["curve"].max(), "adaptive_e": e["adp"],
        "precision": f["pr"]["p"][::-1], "recall": f["pr"]["r"][::-1], "f": f["fm"]["curve"][::-1], "e": e["curve"][::-1],
    }


def test_metrics_equal_pysodmetrics_called_directly() -> None:
    preds, gts = _pairs()
    ours = evaluate_arrays(preds, gts)
    ref = _reference(preds, gts)
    assert ours["n_images"] == 5
    for key in SCALARS:
        if key != "binary_ratio":
            assert ours[key] == pytest.approx(float(ref[key]), abs=1e-12), key
    for key in ("precision", "recall", "f", "e"):
        np.testing.assert_allclose(ours["curves"][key], ref[key], atol=1e-12, err_msg=key)
    assert 0.3 < ours["max_f"] <= 1 and ours["mean_f"] < ours["max_f"]


def test_per_image_scores_equal_pysodmetrics_image_by_image_and_average_to_the_table() -> None:
    preds, gts = _pairs(4, seed=3)
    scores = ev.per_image_scores(preds, gts)
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        mae, sm = sod.MAE(), sod.Smeasure()
        mae.step(pred=pred, gt=gt)  # PySODMetrics' own normalisation of uint8 maps
        sm.step(pred=pred, gt=gt)
        assert scores["mae"][i] == pytest.approx(mae.get_results()["mae"], abs=1e-12)
        assert scores["s_measure"][i] == pytest.approx(sm.get_results()["sm"], abs=1e-12)
    table = evaluate_arrays(preds, gts)
    assert scores["mae"].mean() == pytest.approx(table["mae"], abs=1e-12)
    assert scores["s_measure"].mean() == pytest.approx(table["s_measure"], abs=1e-12)
    assert np.ptp(scores["mae"]) > 0.01  # the photos differ: a per-image mix-up would show
    with pytest.raises(SalkitError, match="got 4 predictions but 3 ground truths"):
        ev.per_image_scores(preds, gts[:3])


def test_float_predictions_give_the_same_numbers_as_uint8() -> None:
    preds, gts = _pairs(3, seed=1)
    as_float = evaluate_arrays([p / 255.0 for p in preds], [g > 128 for g in gts])
    as_uint8 = evaluate_arrays(preds, gts)
    for key in SCALARS:
        assert as_float[key] == pytest.approx(as_uint8[key], abs=1e-12), key


def test_ground_truth_encodings_agree() -> None:
    preds, gts = _pairs(3, seed=2)
    reference = evaluate_arrays(preds, gts)
    for encoded in ([g > 128 for g in gts], [(g > 128).astype(np.uint8) for g in gts], [g / 255.0 for g in gts]):
        result = evaluate_arrays(preds, encoded)
        assert all(result[k] == reference[k] for k in SCALARS)


def test_without_minmax_matches_pysodmetrics_unnormalised() -> None:
    preds, gts = _pairs(3, seed=3)
    floats = [0.2 + 0.6 * p / 255.0 for p in preds]  # a map that never reaches 0 or 1
    ours = evaluate_arrays(floats, gts, minmax=False)
    mae, sm = sod.MAE(), sod.Smeasure()
    for pred, gt in zip(floats, gts, strict=True):
        mae.step(pred=pred, gt=gt > 128, normalize=False)
        sm.step(pred=pred, gt=gt > 128, normalize=False)
    assert ours["mae"] == pytest.approx(float(mae.get_results()["mae"]), abs=1e-12)
    assert ours["s_measure"] == pytest.approx(float(sm.get_results()["sm"]), abs=1e-12)
    assert ours["mae"] != pytest.approx(evaluate_arrays(floats, gts)["mae"], abs=1e-3)


def test_binary_ratio_against_numpy() -> None:
    preds, gts = _pairs(4, seed=4)
    values = np.concatenate([(p / 255.0).ravel() for p in preds])
    expected = np.mean((values < 0.1) | (values > 0.9))
    assert evaluate_arrays(preds, gts)["binary_ratio"] == pytest.approx(expected, abs=1e-12)
    assert evaluate_arrays([np.full((8, 8), 0.5)], [np.eye(8, dtype=bool)])["binary_ratio"] == 0.0
    assert evaluate_arrays([np.eye(8)], [np.eye(8, dtype=bool)])["binary_ratio"] == 1.0


def test_predictions_are_resized_to_the_ground_truth() -> None:
    preds, gts = _pairs(2, seed=5)
    small = [np.asarray(Image.fromarray(p).resize((p.shape[1] // 2, p.shape[0] // 2), Image.BILINEAR)) for p in preds]
    resized = [
        np.asarray(Image.fromarray((s / 255.0).astype(np.float32)).resize(g.shape[::-1], Image.BILINEAR)).astype(np.float64)
        for s, g in zip(small, gts, strict=True)
    ]
    ours = evaluate_arrays(small, gts)
    direct = evaluate_arrays([np.clip(r, 0, 1) for r in resized], gts)
    for key in SCALARS:
        assert ours[key] == pytest.approx(direct[key], abs=1e-9), key
    # and the resized maps still score close to the full-size ones
    assert abs(ours["mae"] - evaluate_arrays(preds, gts)["mae"]) < 0.02


@pytest.mark.parametrize(
    ("preds", "gts", "message"),
    [
        ([np.array([[0.1, np.nan]])], [np.eye(2, dtype=bool)], "prediction of pair 0 .*NaN"),
        ([np.array([[0.1, 1.5]])], [np.eye(2, dtype=bool)], r"\[0, 1\]"),
        ([np.zeros((2, 2, 3))], [np.eye(2, dtype=bool)], "2-D"),
        ([np.zeros((2, 2))], [np.zeros((2, 2), dtype=complex)], "ground truth of pair 0"),
        ([np.zeros((2, 2))], [], "1 predictions but 0"),
        ([], [], "nothing to evaluate"),
    ],
)
def test_array_errors(preds: list, gts: list, message: str) -> None:
    with pytest.raises(SalkitError, match=message):
        evaluate_arrays(preds, gts)


def _write_folders(tmp_path: Path, preds: list[np.ndarray], gts: list[np.ndarray]) -> tuple[Path, Path]:
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir(), gt_dir.mkdir()
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        Image.fromarray(pred).save(pred_dir / f"im{i}.png")
        Image.fromarray(gt).save(gt_dir / f"im{i}.png")
    return pred_dir, gt_dir


def test_folders_give_the_array_numbers(tmp_path: Path) -> None:
    preds, gts = _pairs(4, seed=6)
    pred_dir, gt_dir = _write_folders(tmp_path, preds, gts)
    from_dirs = evaluate_dirs(pred_dir, gt_dir)
    from_arrays = evaluate_arrays(preds, gts)
    assert all(from_dirs[k] == from_arrays[k] for k in SCALARS)


def test_side_maps_beside_predictions_are_skipped(tmp_path: Path) -> None:
    preds, gts = _pairs(3, seed=11)
    pred_dir, gt_dir = _write_folders(tmp_path, preds, gts)
    reference = evaluate_dirs(pred_dir, gt_dir)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(pred_dir / "im1_uncertainty.png")
    result = evaluate_dirs(pred_dir, gt_dir)
    assert result["n_images"] == 3 and all(result[k] == reference[k] for k in SCALARS)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(pred_dir / "im7_uncertainty.png")  # no im7 prediction: an error
    with pytest.raises(SalkitError, match="im7_uncertainty.png"):
        evaluate_dirs(pred_dir, gt_dir)


def test_folder_errors_name_the_files(tmp_path: Path) -> None:
    preds, gts = _pairs(3, seed=7)
    pred_dir, gt_dir = _write_folders(tmp_path, preds, gts)
    (gt_dir / "im1.png").unlink()
    with pytest.raises(SalkitError, match="im1.png"):
        evaluate_dirs(pred_dir, gt_dir)
    Image.fromarray(gts[1]).save(gt_dir / "im1.png")
    (pred_dir / "im2.png").write_bytes(b"garbage")
    with pytest.raises(SalkitError, match="im2.png"):
        evaluate_dirs(pred_dir, gt_dir)
    (pred_dir / "im2.png").unlink()
    (pred_dir / "im2.csv").write_text("1,2")
    with pytest.raises(SalkitError, match="im2.csv"):
        evaluate_dirs(pred_dir, gt_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SalkitError, match="holds no images"):
        evaluate_dirs(tmp_path / "empty", gt_dir)


def test_cli_writes_table_json_and_plot(tmp_path: Path) -> None:
    preds, gts = _pairs(3, seed=8)
    pred_dir, gt_dir = _write_folders(tmp_path, preds, gts)
    out_json, out_png = tmp_path / "r" / "metrics.json", tmp_path / "r" / "curves.png"
    result = CliRunner().invoke(
        eval_command, ["--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(out_json), "--plot", str(out_png)]
    )
    assert result.exit_code == 0, result.output
    expected = evaluate_arrays(preds, gts)
    report = json.loads(out_json.read_text())
    assert all(report[k] == pytest.approx(expected[k], abs=1e-12) for k in SCALARS)
    assert len(report["curves"]["precision"]) == 256
    assert f"{expected['s_measure']:.4f}" in result.output and "binary_ratio" in result.output
    with Image.open(out_png) as plot:
        assert plot.format == "PNG" and plot.size[0] > 400
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["curves.png", "metrics.json"]


def test_cli_error_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    preds, gts = _pairs(2, seed=9)
    pred_dir, gt_dir = _write_folders(tmp_path, preds, gts)
    (gt_dir / "im0.png").unlink()
    out_json = tmp_path / "metrics.json"
    out_json.write_text("old")
    exe = Path(sys.executable).with_name("sal-runtime")
    run = subprocess.run(
        [str(exe), "eval", "--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(out_json), "--plot", str(tmp_path / "c.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "im0.png" in lines[0]
    assert out_json.read_text() == "old" and not (tmp_path / "c.png").exists()


def test_a_failing_plot_leaves_no_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preds, gts = _pairs(2, seed=10)
    pred_dir, gt_dir = _write_folders(tmp_path, preds, gts)

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(ev, "render_curves_png", broken)
    result = CliRunner().invoke(
        eval_command, ["--pred", str(pred_dir), "--gt", str(gt_dir), "--json", str(tmp_path / "m.json"), "--plot", str(tmp_path / "c.png")]
    )
    assert isinstance(result.exception, RuntimeError)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "c.png").exists()
