"""`make real` end to end on a few real photographs: train → export → predict → eval, a tiny budget.

Reads ../shared/data/pascal-s (never copied): 6 train and 4 test photos, the ``smoke`` recipe
(one epoch of 3 steps per model at 32²). Skipped when the data folder is absent.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT / ".." / "shared" / "data" / "pascal-s").resolve()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (DATA / "train.txt").is_file(), reason=f"the PASCAL-S photos are not at {DATA} (see docs/data-and-eval.md)"),
]


def _real_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("experiments_real", ROOT / "experiments" / "real.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_photographs_end_to_end(tmp_path: Path) -> None:
    from click.testing import CliRunner

    train_ids = (DATA / "train.txt").read_text().split()[:6]
    test_ids = (DATA / "test.txt").read_text().split()[:4]
    (tmp_path / "train.txt").write_text("\n".join(train_ids) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test_ids) + "\n")
    real = _real_module()
    out = tmp_path / "out"
    args = ["--out", str(out), "--data", str(DATA), "--train-split", str(tmp_path / "train.txt"),
            "--test-split", str(tmp_path / "test.txt"), "--recipe", "smoke", "--lanes", "3"]
    result = CliRunner().invoke(real.main, args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["n_test"] == 4 and set(results["rows"]) == set(real.MAP_FOLDERS)
    for row in results["rows"].values():
        assert 0.0 <= row["mae"] <= 1.0 and 0.0 <= row["s_measure"] <= 1.0
    assert results["rows"]["all-zero map"]["max_f"] < results["rows"]["centred Gaussian"]["max_f"]
    for stem in test_ids:  # every map at its photo's own size
        with Image.open(DATA / "img" / f"{stem}.jpg") as photo:
            for folder in real.MAP_FOLDERS.values():
                with Image.open(out / "maps" / folder / f"{stem}.png") as m:
                    assert m.size == photo.size, (folder, stem)
    assert (out / "bundle_coop" / "manifest.json").is_file() and (out / "bundle_qefpn" / "manifest.json").is_file()
    assert (out / "pretrain" / "finished").is_file() and (out / "synth" / "synth.json").is_file()
    assert "| coop Ỹ |" in (out / "results.md").read_text()
    with Image.open(out / "examples.png") as picture:
        assert picture.width > 6 * 160 and picture.height > 4 * 160
    # a second call resumes: every stage is marked done, nothing is trained again
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- real-photographs:begin -->\nold\n<!-- real-photographs:end -->\n\n## after\n")
    again = CliRunner().invoke(real.main, [*args, "--readme", str(readme)])
    assert again.exit_code == 0, again.output
    assert "[2/6] train: done earlier" in again.output and "[3/6] export: done earlier" in again.output
    text = readme.read_text()
    assert "old" not in text and "| centred Gaussian |" in text and text.endswith("## after\n")
    assert (tmp_path / "docs" / "img" / "real_examples.png").is_file()


def test_bad_data_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from click.testing import CliRunner

    (tmp_path / "empty.txt").write_text("\n")
    result = CliRunner().invoke(_real_module().main, ["--out", str(tmp_path / "o"), "--data", str(DATA),
                                                      "--train-split", str(tmp_path / "empty.txt")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"error: split file {tmp_path / 'empty.txt'} lists no ids (empty split)"


def test_centred_gaussian_reference() -> None:
    g = _real_module().centred_gaussian(30, 50)
    assert g.shape == (30, 50) and g.max() <= 1.0
    y, x = np.unravel_index(np.argmax(g), g.shape)
    assert (y, x) in {(14, 24), (14, 25), (15, 24), (15, 25)}
    # σ = 0.3 of each side: one σ from the centre along x, the value is e^(−½)
    np.testing.assert_allclose(_real_module().centred_gaussian(1, 1000)[0, 500 + 300], np.exp(-0.5), rtol=1e-2)
