"""``sal-runtime predict`` and ``refine`` on the toy bundles: outputs, sizes, bad files, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from salkit.base.images import read_mask
from salkit.runtime.cli.main import main
from salkit.runtime.predictor import Predictor

SIZES = {"a": (40, 60), "b": (32, 32), "c": (25, 19)}


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for stem, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{stem}.png")
    return images


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_predict_folder_writes_maps_at_original_size(toy_coop, folder, tmp_path) -> None:
    out = tmp_path / "out"
    result = _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", out, "--uncertainty",
                  "--grid", tmp_path / "grid.png", "--backend", "ort-cpu", "--threads", "1", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{s}.png" for s in SIZES] + [f"{s}_uncertainty.png" for s in SIZES])
    for stem, size in SIZES.items():
        assert Image.open(out / f"{stem}.png").size == size[::-1]
        assert Image.open(out / f"{stem}_uncertainty.png").size == size[::-1]
    grid = Image.open(tmp_path / "grid.png")
    header = 2 * 12 + 3 * 4  # two lines of 12-pixel labels above the cells
    assert grid.size == (3 * 132 + 4, 3 * 132 + 4 + header)  # 3 rows (images) × 3 columns (image, map, uncertainty)
    # the written map is the API's answer, quantised to 8 bits
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1) as p:
        first = p.predict([np.asarray(Image.open(folder / "a.png")), np.asarray(Image.open(folder / "b.png"))], seed=0)
    assert np.abs(read_mask(out / "a.png") - first.saliency[0]).max() <= 0.5 / 255 + 1e-6


def test_predict_single_file_with_limit_and_options(toy_coop, folder, tmp_path) -> None:
    out = tmp_path / "one"
    assert _run("predict", "--engine", toy_coop.path, "--input", folder / "c.png", "--out", out, "--samples", "2", "--steps", "1").exit_code == 0
    assert [p.name for p in out.iterdir()] == ["c.png"]
    out2 = tmp_path / "limited"
    assert _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", out2, "--limit", "2").exit_code == 0
    assert sorted(p.name for p in out2.iterdir()) == ["a.png", "b.png"]


def test_bad_file_is_skipped_or_aborts_with_strict(toy_coop, folder, tmp_path) -> None:
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "tolerant"
    result = _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", out)
    assert result.exit_code == 1
    assert "broken.jpg" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]
    strict_out = tmp_path / "strict"
    result = _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", strict_out, "--strict")
    assert result.exit_code == 2
    assert "broken.jpg" in result.output and "--strict" in result.output
    assert not strict_out.exists() or not any(strict_out.iterdir())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--input", "missing_dir"], ["missing_dir", "does not exist"]),
        (["--engine", "no_bundle"], ["no_bundle"]),
        (["--limit", "0"], ["--limit"]),
        (["--backend", "ort-cuda"], ["ort-cuda", "not usable"]),
    ],
)
def test_user_errors_are_one_line_exit_2(toy_coop, folder, tmp_path, args, words) -> None:
    base = {"--engine": str(toy_coop.path), "--input": str(folder), "--out": str(tmp_path / "o")}
    extra = []
    for key, value in zip(args[::2], args[1::2], strict=True):
        if key in base:
            base[key] = str(tmp_path / value) if "missing" in value or "no_" in value else value
        else:
            extra += [key, value]
    result = _run("predict", *[x for kv in base.items() for x in kv], *extra)
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for word in words:
        assert word in line


def test_qefpn_predict_and_uncertainty_refusal(toy_qefpn, folder, tmp_path) -> None:
    assert _run("predict", "--engine", toy_qefpn.path, "--input", folder, "--out", tmp_path / "q").exit_code == 0
    assert len(list((tmp_path / "q").iterdir())) == 3
    result = _run("predict", "--engine", toy_qefpn.path, "--input", folder, "--out", tmp_path / "q2", "--uncertainty")
    assert result.exit_code == 2 and "coop" in result.output


def test_refine_folder(toy_coop, folder, tmp_path) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    for stem, (h, w) in SIZES.items():
        Image.fromarray(np.full((h, w), 100, np.uint8)).save(maps / f"{stem}.png")
    out = tmp_path / "refined"
    result = _run("refine", "--engine", toy_coop.path, "--input", folder, "--maps", maps, "--out", out, "--steps", "3")
    assert result.exit_code == 0, result.output
    assert "refine: 3 Langevin steps (--steps)" in result.output  # the step count that runs is named
    for stem, size in SIZES.items():
        refined = read_mask(out / f"{stem}.png")
        assert refined.shape == size
        assert np.abs(refined - 100 / 255).max() > 2 / 255  # the energy moved the flat map
    (maps / "c.png").unlink()
    result = _run("refine", "--engine", toy_coop.path, "--input", folder, "--maps", maps, "--out", out)
    assert result.exit_code == 2 and "c.png" in result.output


def test_refine_takes_input_and_its_former_name_images(toy_coop, folder, tmp_path) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    for stem, (h, w) in SIZES.items():
        Image.fromarray(np.full((h, w), 100, np.uint8)).save(maps / f"{stem}.png")
    written = {}
    for option in ("--input", "--images"):
        out = tmp_path / option.strip("-")
        result = _run("refine", "--engine", toy_coop.path, option, folder, "--maps", maps, "--out", out, "--steps", "2")
        assert result.exit_code == 0, result.output
        assert ("deprecated" in result.output) == (option == "--images")
        written[option] = {stem: read_mask(out / f"{stem}.png") for stem in SIZES}
    for stem in SIZES:
        np.testing.assert_array_equal(written["--input"][stem], written["--images"][stem])
    help_text = _run("refine", "--help").output
    assert "--input" in help_text and "--images" not in help_text
    assert _run("refine", "--engine", toy_coop.path, "--maps", maps, "--out", tmp_path / "x").exit_code == 2
    both = _run("refine", "--engine", toy_coop.path, "--input", folder, "--images", folder, "--maps", maps, "--out", tmp_path / "y")
    assert both.exit_code == 2 and "--input only" in both.output


def test_grid_has_labelled_columns_and_a_ground_truth_column(toy_coop, folder, tmp_path) -> None:
    masks = tmp_path / "gt"
    masks.mkdir()
    for stem, (h, w) in SIZES.items():
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2] = 200  # top half foreground (> 128), the rest 100 (background under > 128)
        mask[h // 2 :] = 100
        Image.fromarray(mask).save(masks / f"{stem}.png")
    grid_path = tmp_path / "grid.png"
    result = _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", tmp_path / "o", "--grid", grid_path,
                  "--grid-gt", masks, "--backend", "ort-cpu", "--threads", "1")
    assert result.exit_code == 0, result.output
    grid = np.asarray(Image.open(grid_path).convert("L")).astype(int)
    header = 2 * 12 + 3 * 4
    assert grid.shape[1] == 3 * 132 + 4  # image | ground truth | saliency
    assert (grid[:header] < 100).sum() > 50  # label text in the header row
    top = header + 4 + 132  # second row: b.png, square, so its cells have no margins
    gt_cell = grid[top : top + 128, 4 + 132 : 4 + 132 + 128]
    assert gt_cell[:60].min() >= 250 and gt_cell[68:].max() <= 5  # binarised: white top half, black bottom half
    (masks / "b.png").unlink()
    result = _run("predict", "--engine", toy_coop.path, "--input", folder, "--out", tmp_path / "o2", "--grid", grid_path,
                  "--grid-gt", masks, "--backend", "ort-cpu", "--threads", "1")
    assert result.exit_code == 2 and "no mask for b.png" in result.output
