"""The generated results section of docs/results.md (``repro_readme``) from a small synthetic
results.json, and the curves picture from known maps."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments import repro_readme
from experiments.repro_verdict import Check, check_verdict, claim_verdict, summarise_rows
from salkit.base.errors import SalkitError

README = """# project

Intro text stays as it is.

## Results

<!-- results:begin -->
old pointer paragraph
<!-- results:end -->

## After

Tail text stays too.
"""

PER_SEED = [  # s_measure of rows A and B, mae of A and B, per seed
    {"A": {"s_measure": 0.81, "mae": 0.10}, "B": {"s_measure": 0.70, "mae": 0.20}},
    {"A": {"s_measure": 0.79, "mae": 0.12}, "B": {"s_measure": 0.72, "mae": 0.19}},
    {"A": {"s_measure": 0.60, "mae": 0.15}, "B": {"s_measure": 0.71, "mae": 0.21}},
]


def synthetic_results() -> dict[str, Any]:
    checks = [check_verdict(Check("mae", "A", "B"), PER_SEED), check_verdict(Check("s_measure", "A", "B"), PER_SEED)]
    return {
        "budget": "smoke", "command": "python -m experiments.repro --budget smoke --out runs/demo",
        "sizes": {"size": 32, "n_train": 4, "n_test": 3, "seeds": [1, 2, 3]},
        "machine": {"platform": "Linux-test-x86_64", "cpus": 7, "torch": "9.9", "threads": 3},
        "claims": {
            "demo": {"title": "Demo: A beats B", "metrics": ["mae", "s_measure"], "note": "",
                     "rows": summarise_rows([{r: dict(v) for r, v in s.items()} for s in PER_SEED]),
                     "checks": checks, "verdict": claim_verdict(checks), "per_seed": [{"rows": s} for s in PER_SEED]},
            "later": {"title": "Never measured", "metrics": ["mae"], "note": "", "rows": {}, "checks": [],
                      "per_seed": [], "verdict": "not run"},
        },
    }


def _section(tmp_path: Path, pictures: dict[str, str] | None = None) -> str:
    return repro_readme.render_section(
        synthetic_results(), command="python -m experiments.repro --doc docs/results.md",
        pictures=pictures if pictures is not None else {"curves": "img/repro_curves.png"},
        results_link="repro-report.md")


def test_section_holds_the_numbers_commands_machines_and_pictures(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert repro_readme.write_readme(readme, _section(tmp_path))
    text = readme.read_text()
    head, rest = text.split("<!-- results:begin -->")
    body, tail = rest.split("<!-- results:end -->")
    assert head == README.split("<!-- results:begin -->")[0] and tail == README.split("<!-- results:end -->")[1]
    assert "old pointer paragraph" not in body
    # Claims: verdict (mae holds in every seed, s_measure in 2 of 3 → partly) and mean ± std (ddof 1).
    mae_a = np.array([s["A"]["mae"] for s in PER_SEED])
    mae_b = np.array([s["B"]["mae"] for s in PER_SEED])
    assert f"| Demo: A beats B | partly | A mae {mae_a.mean():.4f} ± {mae_a.std(ddof=1):.4f} vs B " \
           f"{mae_b.mean():.4f} ± {mae_b.std(ddof=1):.4f}; checks: 1 yes, 1 mixed, 0 no |" in body
    assert "| Never measured | not run | — |" in body
    assert "`python -m experiments.repro --budget smoke --out runs/demo`" in body
    assert "Linux-test-x86_64, 7 CPUs, torch 9.9 (3 threads)" in body
    assert "![curves](img/repro_curves.png)" in body and "![examples]" not in body
    assert "[repro-report.md](repro-report.md)" in body


def test_regenerating_is_idempotent(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert repro_readme.write_readme(readme, _section(tmp_path)) is True
    once = readme.read_bytes()
    assert repro_readme.write_readme(readme, _section(tmp_path)) is False
    assert readme.read_bytes() == once


@pytest.mark.parametrize("broken", [
    README.replace("<!-- results:end -->\n", ""),
    README.replace("<!-- results:begin -->\n", ""),
    README + "<!-- results:begin -->\n",
    README.replace("<!-- results:begin -->", "<!-- x -->").replace("<!-- results:end -->", "<!-- results:begin -->")
    .replace("<!-- x -->", "<!-- results:end -->"),
])
def test_missing_duplicated_or_swapped_markers_leave_the_readme_untouched(tmp_path: Path, broken: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(broken)
    before = (readme.read_bytes(), os.stat(readme).st_mtime_ns)
    with pytest.raises(SalkitError, match="results:") as info:
        repro_readme.write_readme(readme, _section(tmp_path))
    assert "\n" not in str(info.value)
    assert (readme.read_bytes(), os.stat(readme).st_mtime_ns) == before
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary file left behind


def test_cli_checks_the_readme_before_training(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from experiments import repro

    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    out = tmp_path / "r"
    runner = CliRunner()
    for args, message in ((["--publish", str(tmp_path / "docs"), "--doc", str(readme)], "results:begin"),
                          (["--doc", str(readme)], "needs --publish"),
                          (["--publish", str(tmp_path / "docs"), "--readme", str(readme)], "results:begin")):
        result = runner.invoke(repro.main, ["--budget", "smoke", "--out", str(out), *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()  # nothing trained, nothing written
    assert readme.read_text() == "# no markers\n"


@pytest.mark.filterwarnings("ignore:This class will be removed:UserWarning")  # the toolkit's classic Fmeasure
def test_curves_are_pysodmetrics_precision_recall_of_the_maps() -> None:
    import py_sod_metrics as sod
    from PIL import Image

    from experiments.repro_curves import WIDTH, curve_results, curves_png
    from salkit.base.metrics import render_curves_png

    rng = np.random.default_rng(0)
    masks = np.zeros((3, 24, 24), dtype=bool)
    masks[:, 6:18, 4:16] = True
    # Maps on the 1/255 grid that reach 0 and 1: the toolkit's uint8 path sees exactly the same values.
    levels = np.clip(np.rint(255 * (0.6 * masks + rng.random(masks.shape) * 0.5)), 0, 255).astype(np.uint8)
    levels[:, 0, 0], levels[:, 0, 1] = 0, 255
    maps = {"good": levels / 255.0, "noise": rng.integers(0, 256, masks.shape).astype(np.uint8) / 255.0}
    results = curve_results(maps, masks)
    for label, values in maps.items():
        reference = sod.Fmeasure()
        for m, gt in zip(values, masks, strict=True):
            reference.step(pred=np.rint(m * 255).astype(np.uint8), gt=gt.astype(np.uint8) * 255)
        pr = reference.get_results()["pr"]
        # The toolkit orders thresholds from 255 down to 0; the curves go up.
        assert results[label]["curves"]["precision"] == pytest.approx(np.flip(pr["p"]), abs=1e-9)
        assert results[label]["curves"]["recall"] == pytest.approx(np.flip(pr["r"]), abs=1e-9)
    assert results["good"]["max_f"] > results["noise"]["max_f"] + 0.2

    png = curves_png(results, "seed 1")
    one_row = Image.open(io.BytesIO(render_curves_png(results["good"])))
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        assert im.format == "PNG" and im.width == WIDTH
        assert im.height == round(2 * one_row.height * WIDTH / one_row.width)  # one row per model
    assert len(png) < 120_000  # small enough for the docs


def test_small_means_keep_their_significant_digits() -> None:
    from experiments.repro_verdict import format_stat

    assert format_stat({"mean": 0.25251, "std": 0.0248}, 4) == "0.2525 ± 0.0248"
    assert format_stat({"mean": 1.234e-4, "std": 5.6e-5}, 3) == "0.000123 ± 5.6e-05"
    assert format_stat({"mean": 0.0, "std": 0.0}, 3) == "0.000 ± 0.000"


def test_a_publishing_call_reports_the_measuring_calls_wall_time() -> None:
    from experiments.repro import _wall_time

    assert "last call that trained and measured into `<out>` 551 s" in _wall_time({"seconds": 0.1, "machine": {"measuring_call_seconds": 550.7}})
    assert "last call" not in _wall_time({"seconds": 550.7, "machine": {"measuring_call_seconds": 550.7}})
    assert "last call" not in _wall_time({"seconds": 3.0, "machine": {}})  # records from before the field existed
