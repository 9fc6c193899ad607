"""The full recipe's training curve: every kept checkpoint judged once, on the trials' held-out photos."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

import real_curve as curve  # noqa: E402 — after experiments/ is put on sys.path


def test_kept_checkpoints_are_judged_once_each(tmp_path: Path) -> None:
    from salkit.train.coop.cli import main as train_coop
    from salkit.train.data.synth import write_dataset

    data = tmp_path / "data"
    write_dataset(data, n=10, size=32, seed=0)
    (data / "train.txt").write_text("\n".join(p.stem for p in sorted((data / "img").iterdir())) + "\n")
    run = tmp_path / "run"
    trained = CliRunner().invoke(train_coop, ["--data", str(data), "--out", str(run / "gx"), "--preset", "tiny", "--size", "32",
                                              "--batch-size", "4", "--max-steps", "4", "--keep-every", "2", "--grid-every", "0",
                                              "--no-progress", "--threads", "1", "--generator-only", "deterministic"])
    assert trained.exit_code == 0, trained.output
    args = ["--run", str(run), "--reference", str(tmp_path / "none"), "--train-data", str(data)]
    first = CliRunner().invoke(curve.main, args)
    assert first.exit_code == 0, first.output
    assert first.output.count("judging") == 2  # kept steps 2 and 4; the job has not finished, so no last row
    rows = json.loads((run / "curve" / "curve.json").read_text())
    assert [(r["job"], r["step"], r["photos"]) for r in rows] == [("gx", 2, 8), ("gx", 4, 16)]
    assert rows[0]["metrics"] != rows[1]["metrics"]  # two different weights, two different scores
    direct = curve.score(run / "gx" / "kept" / "step_0000004.pt", data, run / "curve" / "held.txt", "h0")
    assert rows[1]["metrics"] == {m: direct[m] for m in curve.METRICS}
    again = CliRunner().invoke(curve.main, args)
    assert again.exit_code == 0 and "judging" not in again.output  # cached
    assert (run / "curve" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = CliRunner().invoke(curve.main, ["--run", str(tmp_path / "absent")])
    assert missing.exit_code == 2 and "does not exist" in missing.output

    no_test = CliRunner().invoke(curve.main, [*args, "--benchmark"])
    assert no_test.exit_code == 2 and "all.txt" in no_test.output
    (run / "test").symlink_to(data)  # the data stage links the benchmark's photos; here the same synthetic set
    (run / "splits").mkdir()
    (run / "splits" / "all.txt").write_text("\n".join(p.stem for p in sorted((data / "img").iterdir())[:6]) + "\n")
    bench = CliRunner().invoke(curve.main, [*args, "--benchmark"])
    assert bench.exit_code == 0, bench.output
    assert bench.output.count("judging") == 1  # the latest checkpoint only
    rows = json.loads((run / "curve" / "curve.json").read_text())
    on_test = [r for r in rows if r["run"] == "benchmark"]
    assert [(r["job"], r["step"], r["n"]) for r in on_test] == [("gx", 4, 6)]
    direct = curve.score(run / "gx" / "kept" / "step_0000004.pt", run / "test", run / "splits" / "all.txt", "h0")
    assert on_test[0]["metrics"] == {m: direct[m] for m in curve.METRICS}
    assert on_test[0]["metrics"] != rows[1]["metrics"]  # 6 photos, not the 200 held-out ones
    assert "on all 6 benchmark photos" in (run / "curve" / "curve.md").read_text()
