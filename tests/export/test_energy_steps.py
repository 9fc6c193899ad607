"""The energy's step count is chosen on held-out masked photos: kept where it helps, 0 where it harms."""

from __future__ import annotations

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
