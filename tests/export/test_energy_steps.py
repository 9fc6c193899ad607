"""The energy's step count is chosen on held-out masked photos: kept where it helps, 0 where it harms."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from salkit.export.energy_steps import MAE_TOLERANCE, choose


def _rows(*pairs: tuple[float, float]) -> list[dict[str, float]]:
    return [{"steps": k, "mae": mae, "s_measure": s} for k, (mae, s) in enumerate(pairs)]


def test_choose_keeps_the_fewest_steps_that_help_and_none_that_harm() -> None:
    assert choose(_rows((0.10, 0.80), (0.11, 0.79), (0.12, 0.78))) == 0  # every step harms
    assert choose(_rows((0.10, 0.80), (0.09, 0.79), (0.08, 0.78))) == 0  # MAE better, S worse: not kept
    assert choose(_rows((0.10, 0.80), (0.09, 0.81), (0.08, 0.82), (0.0799, 0.83))) == 2  # 3 is within tolerance of 2
    assert choose(_rows((0.10, 0.80), (0.09, 0.81), (0.08 - 2 * MAE_TOLERANCE, 0.80))) == 2
    assert choose(_rows((0.10, 0.80))) == 0


def _flipped(checkpoint: Path, out: Path) -> Path:
    """The checkpoint with U → −U: its descent climbs the trained energy, away from the masks."""
    import torch

    from salkit.train.engine.checkpoint import build_model, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt)
    with torch.no_grad():
        model.energy.net[-1].weight.neg_()
    ckpt["state_dict"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(ckpt, out)
    return out


@pytest.mark.parametrize("energy", ["trained", "flipped"])
def test_export_records_the_table_and_the_runtime_runs_the_chosen_steps(
        energy: str, strong_coop_checkpoint: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    from salkit.base.images import decode_gray, decode_image, list_images
    from salkit.base.metrics import per_image_scores
    from salkit.export.bundle_writer import ExportOptions, export_bundle
    from salkit.runtime.predictor import Predictor

    checkpoint = strong_coop_checkpoint if energy == "trained" else _flipped(strong_coop_checkpoint, tmp_path / "flip.pt")
    bundle = tmp_path / "bundle"
    manifest = export_bundle(ExportOptions(ckpt=checkpoint, out=bundle, precision="fp32", calib=synthetic_dataset,
                                           build_engines=False))
    gate = manifest.extra["energy_steps"]
    rows = gate["by_steps"]
    assert gate["trained"] == 5 and [r["steps"] for r in rows] == list(range(11))
    assert gate["chosen"] == choose(rows) == manifest.coop["langevin_steps"]
    if energy == "flipped":  # climbing the energy harms, so the bundle keeps the generator's maps
        assert rows[5]["mae"] > rows[0]["mae"] + 1e-3 and gate["chosen"] == 0

    # Independently of the gate's refine-based table: the image-level predict with k steps scores what row k says.
    photos = list_images(synthetic_dataset / "img")[: gate["photos"]]
    gts = [decode_gray(synthetic_dataset / "gt" / f"{p.stem}.png") > 128 for p in photos]
    with Predictor.from_bundle(bundle, backend="ort-cpu", precision="fp32") as predictor:
        for k in sorted({0, 5, gate["chosen"]}):
            maps = predictor.predict([decode_image(p) for p in photos], steps=k, uncertainty=False, seed=0).saliency
            mae = float(np.mean(per_image_scores(maps, gts)["mae"]))
            assert mae == pytest.approx(rows[k]["mae"], abs=2e-4), k
        default = predictor.predict([decode_image(photos[0])], uncertainty=False, seed=0).saliency[0]
        chosen = predictor.predict([decode_image(photos[0])], steps=gate["chosen"], uncertainty=False, seed=0).saliency[0]
        np.testing.assert_array_equal(default, chosen)


def test_without_masks_the_trained_steps_stay(tiny_coop_checkpoint: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    from salkit.export.bundle_writer import ExportOptions, export_bundle

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((synthetic_dataset / "img").iterdir())[:4]:
        (photos / path.name).symlink_to(path.resolve())
    manifest = export_bundle(ExportOptions(ckpt=tiny_coop_checkpoint, out=tmp_path / "b", precision="fp32", calib=photos,
                                           build_engines=False))
    assert "energy_steps" not in manifest.extra and manifest.coop["langevin_steps"] == 5


def test_choose_for_all_keeps_only_steps_that_harm_no_source() -> None:
    from salkit.export.energy_steps import choose_for_all

    helps = _rows((0.10, 0.80), (0.09, 0.81), (0.08, 0.82))
    harms_at_2 = _rows((0.10, 0.80), (0.095, 0.805), (0.11, 0.79))
    assert choose_for_all([helps]) == choose(helps) == 2
    assert choose_for_all([helps, harms_at_2]) == 1  # step 2 helps one source and harms the other
    assert choose_for_all([helps, _rows((0.10, 0.80), (0.12, 0.79), (0.13, 0.78))]) == 0  # every step harms a source


def _write_maps(dataset: Path, folder: Path, make) -> Path:
    """One map per masked photo of ``dataset``: ``make(mask in [0, 1]) → map``, as <stem>.png."""
    from salkit.base.images import read_mask, save_png_map
    from salkit.export.energy_steps import masked_photos

    folder.mkdir(parents=True)
    for photo, mask in masked_photos(dataset):
        save_png_map(folder / f"{photo.stem}.png", np.clip(make(read_mask(mask)), 0.0, 1.0))
    return folder


def _blurred(mask: np.ndarray, shift: int = 0) -> np.ndarray:
    """A box blur (9 px) of the mask, moved ``shift`` px right, under a little noise: maps another model
    could make. Not an affine map of the mask: the metrics scale each map to [0, 1] before scoring."""
    out = np.mean([np.roll(mask, (dy, dx + shift), (0, 1)) for dy in range(-4, 5) for dx in range(-4, 5)], axis=0)
    return 0.1 + 0.8 * out + 0.05 * np.random.default_rng(0).standard_normal(mask.shape)


_soft = _blurred


@pytest.mark.parametrize("energy", ["trained", "flipped"])
def test_refine_steps_are_judged_on_other_models_maps(energy: str, strong_coop_checkpoint: Path, synthetic_dataset: Path,
                                                      tmp_path: Path) -> None:
    from salkit.base.images import decode_gray, decode_image, read_mask
    from salkit.base.metrics import per_image_scores
    from salkit.export.bundle_writer import ExportOptions, export_bundle
    from salkit.export.energy_steps import choose_for_all, masked_photos
    from salkit.runtime.predictor import Predictor

    checkpoint = strong_coop_checkpoint if energy == "trained" else _flipped(strong_coop_checkpoint, tmp_path / "flip.pt")
    soft = _write_maps(synthetic_dataset, tmp_path / "soft", _soft)
    shifted = _write_maps(synthetic_dataset, tmp_path / "shifted", lambda m: _blurred(m, shift=6))
    bundle = tmp_path / "bundle"
    manifest = export_bundle(ExportOptions(ckpt=checkpoint, out=bundle, precision="fp32", calib=synthetic_dataset,
                                           build_engines=False, refine_maps=(soft, shifted)))
    gate = manifest.extra["refine_steps"]
    tables = gate["by_source"]
    assert set(tables) == {"soft", "shifted"} and all([r["steps"] for r in t] == list(range(11)) for t in tables.values())
    assert gate["chosen"] == choose_for_all(list(tables.values())) == manifest.coop["refine_steps"]

    # The tables, independently: row 0 scores the maps as written, row k what refine(photo, map, steps=k) returns.
    pairs = masked_photos(synthetic_dataset)
    photos = [decode_image(p) for p, _ in pairs]
    gts = [decode_gray(m) > 128 for _, m in pairs]
    starts = [read_mask(soft / f"{p.stem}.png") for p, _ in pairs]
    assert float(np.mean(per_image_scores(starts, gts)["mae"])) == pytest.approx(tables["soft"][0]["mae"], abs=1e-6)
    assert 0.02 < tables["soft"][0]["mae"] < tables["shifted"][0]["mae"]  # imperfect maps, the shifted ones worse
    with Predictor.from_bundle(bundle, backend="ort-cpu", precision="fp32") as predictor:
        for k in (3, 10):
            mae = float(np.mean(per_image_scores(predictor.refine(photos, starts, steps=k), gts)["mae"]))
            assert mae == pytest.approx(tables["soft"][k]["mae"], abs=1e-6), k
        if energy == "flipped":  # climbing the energy moves soft maps away from their masks: refine keeps them
            assert tables["soft"][5]["mae"] > tables["soft"][0]["mae"] + 1e-3 and gate["chosen"] == 0
        default = predictor.refine(photos[:2], starts[:2])
        for got, want in zip(default, predictor.refine(photos[:2], starts[:2], steps=gate["chosen"]), strict=True):
            np.testing.assert_array_equal(got, want)


def test_refine_and_predict_take_their_own_default_steps(tiny_coop_bundle: Path, tmp_path: Path) -> None:
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.predictor import Predictor

    bundle = tmp_path / "b"
    shutil.copytree(tiny_coop_bundle, bundle)
    manifest = load_bundle(bundle)
    assert manifest.coop["langevin_steps"] == 5
    manifest.coop["refine_steps"] = 2
    manifest.write(bundle)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    start = rng.uniform(0.2, 0.8, (64, 64)).astype(np.float32)
    with Predictor.from_bundle(bundle, backend="ort-cpu", precision="fp32") as predictor:
        # refine at a photo's own size adds the steps' change to the given map: no step gives the map back, not a
        # copy blurred by the round trip through S × S (the photo here is larger than the bundle's 64²)
        big, big_map = np.kron(photo, np.ones((3, 2, 1), np.uint8)), rng.uniform(0, 1, (192, 128)).astype(np.float32)
        np.testing.assert_allclose(predictor.refine([big], [big_map], steps=0)[0], big_map, atol=1e-6)
        refined = {k: predictor.refine([photo], [start], steps=k)[0] for k in (2, 5)}
        assert np.abs(refined[2] - refined[5]).max() > 1e-6  # the counts are told apart
        np.testing.assert_array_equal(predictor.refine([photo], [start])[0], refined[2])
        predicted = {k: predictor.predict([photo], steps=k, uncertainty=False, seed=0).saliency[0] for k in (2, 5, None)}
        np.testing.assert_array_equal(predicted[None], predicted[5])


def test_refine_maps_bad_input_refused_before_any_work(tiny_coop_checkpoint: Path, tiny_qefpn_checkpoint: Path,
                                                       synthetic_dataset: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from salkit.export.cli import main

    soft = _write_maps(synthetic_dataset, tmp_path / "soft", _soft)
    partial = tmp_path / "partial"
    shutil.copytree(soft, partial)
    dropped = sorted(partial.iterdir())[3]
    dropped.unlink()

    def run(*args: object) -> tuple[int, str]:
        out = tmp_path / "out"
        result = CliRunner().invoke(main, ["--ckpt", str(tiny_coop_checkpoint), "--out", str(out), "--precision", "fp32",
                                           "--no-engine", *map(str, args)])
        assert not out.exists()
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
        return result.exit_code, result.output

    for args, fragment in [
        (["--calib", synthetic_dataset, "--refine-maps", tmp_path / "nope"], "nope is not a folder"),
        (["--calib", synthetic_dataset, "--refine-maps", partial], dropped.name),
        (["--refine-maps", soft], "needs --calib photos with masks"),
        (["--calib", synthetic_dataset, "--energy-steps", "trained", "--refine-maps", soft], "--energy-steps gate"),
        (["--calib", synthetic_dataset, "--refine-maps", soft, "--refine-maps", soft], "distinct names"),
    ]:
        code, text = run(*args)
        assert code == 2 and fragment in text, (args, text)
    result = CliRunner().invoke(main, ["--ckpt", str(tiny_qefpn_checkpoint), "--out", str(tmp_path / "q"), "--precision", "fp32",
                                       "--no-engine", "--calib", str(synthetic_dataset), "--refine-maps", str(soft)])
    assert result.exit_code == 2 and "cooperative" in result.output and not (tmp_path / "q").exists(), result.output
