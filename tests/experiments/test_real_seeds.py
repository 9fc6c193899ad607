"""experiments/real_seeds.py: the spread over seeds, checked against `statistics`, and its refusals."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

from real_seeds import BEGIN, END, aggregate, main, markdown, read_runs  # noqa: E402 — after experiments/ is put on sys.path

from salkit.base.errors import SalkitError  # noqa: E402 — after experiments/ is put on sys.path


def _row(mae: float, s: float) -> dict[str, float]:
    return {"mae": mae, "s_measure": s, "max_f": 0.5 + mae, "mean_f": 0.4, "mean_e": 0.6}


def _write_run(folder: Path, seed: int, rows: dict[str, dict[str, float]], **over: object) -> Path:
    results = {"dataset": "d", "test_split": "test", "protocol": "p", "recipe": "full", "n_test": 170, "seed": seed,
               "rows": rows, "timing": {"cpu": "AMD EPYC"}, **over}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def _three(tmp_path: Path) -> list[Path]:
    # QE-FPN's refine lowers MAE in seeds 0 and 1 and raises it in seed 2; seed 2 has no G(X,h) row.
    return [
        _write_run(tmp_path / "a", 0, {"coop Ŷ": _row(0.30, 0.60), "coop Ỹ": _row(0.28, 0.61), "QE-FPN": _row(0.25, 0.64),
                                       "QE-FPN + refine": _row(0.24, 0.65), "G(X,h) alone": _row(0.23, 0.50)}),
        _write_run(tmp_path / "b", 1, {"coop Ŷ": _row(0.32, 0.58), "coop Ỹ": _row(0.29, 0.60), "QE-FPN": _row(0.26, 0.63),
                                       "QE-FPN + refine": _row(0.25, 0.63), "G(X,h) alone": _row(0.22, 0.52)}),
        _write_run(tmp_path / "c", 2, {"coop Ŷ": _row(0.27, 0.62), "coop Ỹ": _row(0.27, 0.62), "QE-FPN": _row(0.24, 0.66),
                                       "QE-FPN + refine": _row(0.245, 0.655)}),
    ]


def test_mean_and_sd_per_row_match_statistics_and_a_missing_row_counts_only_its_seeds(tmp_path: Path) -> None:
    agg = aggregate(read_runs(_three(tmp_path)))
    ytilde = agg["rows"]["coop Ỹ"]
    assert ytilde["seeds"] == [0, 1, 2] and ytilde["mae"]["values"] == [0.28, 0.29, 0.27]
    assert ytilde["mae"]["mean"] == pytest.approx(statistics.mean([0.28, 0.29, 0.27]))
    assert ytilde["mae"]["sd"] == pytest.approx(statistics.stdev([0.28, 0.29, 0.27]))  # n − 1, not n
    gxh = agg["rows"]["G(X,h) alone"]
    assert gxh["seeds"] == [0, 1] and gxh["s_measure"]["sd"] == pytest.approx(statistics.stdev([0.50, 0.52]))


def test_each_claim_is_counted_seed_by_seed(tmp_path: Path) -> None:
    agg = aggregate(read_runs(_three(tmp_path)))
    claims = {(c["ours"], c["base"]): c for c in agg["claims"]}
    refine = claims[("QE-FPN + refine", "QE-FPN")]
    assert refine["mae"]["deltas"] == pytest.approx([-0.01, -0.01, 0.005])
    assert refine["mae"]["holds_in"] == 2 and refine["s_measure"]["holds_in"] == 1  # S: +0.01, 0, −0.005
    assert claims[("coop Ỹ", "coop Ŷ")]["mae"]["holds_in"] == 2  # seed 2's Ỹ equals its Ŷ: not better
    assert claims[("coop Ỹ", "G(X,h) alone")]["seeds"] == [0, 1]
    assert ("coop Ỹ", "G(X)") not in claims  # no run has G(X)
    text = markdown(agg)
    assert "| coop Ỹ | 0.280 ± 0.010 |" in text and "| G(X,h) alone | 0.225 ± 0.007 |" in text
    assert "| 0, 1 |" in text  # the row two seeds trained says which
    assert "- QE-FPN + refine vs QE-FPN: MAE Δ -0.0050 ± 0.0087, better in 2 of 3" in text


@pytest.mark.parametrize("fault, message", [
    ("test split", "the runs differ in 'test_split'"),
    ("same seed", "the runs' seeds repeat ([0, 0])"),
    ("one run", "a spread needs at least 2 runs, got 1"),
    ("no results", "results.json cannot be read as JSON"),
])
def test_runs_that_do_not_judge_the_same_thing_are_refused(tmp_path: Path, fault: str, message: str) -> None:
    first = _write_run(tmp_path / "a", 0, {"coop Ŷ": _row(0.3, 0.6)})
    others = {  # made only for the case at hand
        "test split": lambda: [_write_run(tmp_path / "b", 1, {"coop Ŷ": _row(0.3, 0.6)}, test_split="train")],
        "same seed": lambda: [_write_run(tmp_path / "b", 0, {"coop Ŷ": _row(0.3, 0.6)})],
        "one run": lambda: [],
        "no results": lambda: [tmp_path / "missing"],
    }[fault]()
    with pytest.raises(SalkitError) as err:
        read_runs([first, *others])
    assert message in str(err.value)


def test_cli_writes_the_spread_and_only_the_docs_section(tmp_path: Path) -> None:
    runs = _three(tmp_path)
    readme = tmp_path / "results.md"
    readme.write_text(f"# head\n{BEGIN}\nold\n{END}\ntail\n")
    out = tmp_path / "spread"
    result = CliRunner().invoke(main, [*map(str, runs), "--out", str(out), "--doc", str(readme)])
    assert result.exit_code == 0, result.output
    text = (out / "seeds.md").read_text()
    assert readme.read_text() == f"# head\n{BEGIN}\n{text}{END}\ntail\n"
    assert json.loads((out / "seeds.json").read_text())["seeds"] == [0, 1, 2]


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    runs = _three(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    out = tmp_path / "spread"
    result = CliRunner().invoke(main, [*map(str, runs), "--out", str(out), "--readme", str(readme)])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "has no single <!-- real-seeds:begin -->" in result.output and not out.exists()
    result = CliRunner().invoke(main, [str(runs[0]), str(tmp_path / "nowhere"), "--out", str(out)])
    assert result.exit_code == 2 and "nowhere/results.json cannot be read" in result.output and not out.exists()


def test_per_photo_pairs_each_claim_in_each_run(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    runs = []
    for seed in (0, 1):
        run = _write_run(tmp_path / f"s{seed}", seed, {"QE-FPN": _row(0.25, 0.64), "QE-FPN + refine": _row(0.24, 0.65)})
        for i in range(6):
            gt = np.zeros((16, 20), bool)
            gt[4:12, 5:15] = True
            base = np.clip(0.5 * gt + 0.25 + rng.normal(0, 0.1, gt.shape), 0, 1)
            for folder, m in (("qefpn", base), ("qefpn_refined", np.clip(base + 0.2 * (gt - 0.5), 0, 1))):
                (run / "maps" / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray((255 * m).astype(np.uint8)).save(run / "maps" / folder / f"p{i}.png")
            (run / "test" / "gt").mkdir(parents=True, exist_ok=True)
            Image.fromarray(gt.astype(np.uint8) * 255).save(run / "test" / "gt" / f"p{i}.png")
        runs.append(run)
    result = CliRunner().invoke(main, [*map(str, runs), "--out", str(tmp_path / "out"), "--per-photo"])
    assert result.exit_code == 0, result.output
    claim = json.loads((tmp_path / "out" / "seeds.json").read_text())["claims"][0]
    assert [one["seed"] for one in claim["per_photo"]] == [0, 1]
    assert all(one["n"] == 6 and one["mae"]["better_share"] == 1.0 for one in claim["per_photo"])  # sharper everywhere
    assert "  - seed 1, photo by photo (6): MAE Δ -" in result.output
