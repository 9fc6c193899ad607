"""How many steps the energy takes, chosen where it helps: on held-out training photographs with masks.

The energy U revises a map by K noise-free gradient steps (predict: Ŷ → Ỹ; refine: another model's
map → a revised one). Training fixes K, but whether those steps improve a map depends on how good
the map already is: an energy trained on weak maps may move strong ones the wrong way. So at export,
on the ``--calib`` photographs that have masks (a dataset root with ``gt/``; never a test set), the
bundle's own Ŷ is revised for k = 0 … ``2K`` steps and each k is judged by MAE and S-measure.

The bundle keeps, among the k whose MAE is not above k = 0's and whose S is not below it, the fewest
steps within ``MAE_TOLERANCE`` of the lowest MAE; when no k ≥ 1 qualifies it keeps 0, and the energy then leaves maps as they are: a
revision that does nothing is better than one that harms. The whole table goes into the manifest
(``extra["energy_steps"]``), so the choice can be read and argued with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

MAX_PHOTOS = 100  # enough to see a 0.002 change in mean MAE over the photos' spread, under a minute at 224²
MASK_FOLDERS = ("gt", "masks", "GT")
MAE_TOLERANCE = 5e-4  # MAE differences below this are not worth another energy-gradient pass


def masked_photos(root: Path, limit: int = MAX_PHOTOS) -> list[tuple[Path, Path]]:
    """(photo, mask) pairs of a calibration root with a mask folder, in the calibration order; [] without one."""
    from salkit.export.precision.calib import calibration_files

    folder = next((root / name for name in MASK_FOLDERS if (root / name).is_dir()), None)
    if folder is None:
        return []
    files, _ = calibration_files(root)
    masks = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".png"}
    return [(photo, masks[photo.stem]) for photo in files if photo.stem in masks][:limit]


def step_table(predictor: Any, pairs: list[tuple[Path, Path]], max_steps: int, seed: int = 0) -> list[dict[str, float]]:
    """Mean MAE and S of the bundle's maps after k = 0 … ``max_steps`` noise-free energy steps."""
    from salkit.base.images import decode_gray, decode_image, resize_map
    from salkit.base.metrics import per_image_scores
    from salkit.runtime.inputs import to_batch

    photos = [decode_image(photo) for photo, _ in pairs]
    gts = [decode_gray(mask) > 128 for _, mask in pairs]
    m = predictor.manifest
    x = to_batch(photos, m.input_size, m.mean, m.std).x
    first = predictor.predict_tensor(x, steps=0, uncertainty=False, seed=seed)["saliency"]  # Ŷ (B, 1, S, S)
    rows = []
    for k in range(max_steps + 1):
        maps = first if k == 0 else predictor.refine_tensor(x, np.clip(first, 0.0, 1.0), steps=k)
        back = [np.clip(resize_map(maps[i, 0], gt.shape), 0.0, 1.0) for i, gt in enumerate(gts)]
        scores = per_image_scores(back, gts)
        rows.append({"steps": k, "mae": float(scores["mae"].mean()), "s_measure": float(scores["s_measure"].mean())})
    return rows


def choose(rows: list[dict[str, float]], tolerance: float = MAE_TOLERANCE) -> int:
    """Among the k that raise neither MAE nor lower S against k = 0, the fewest steps within ``tolerance``
    of the lowest MAE (each step is an energy-gradient pass per predict); 0 when no k ≥ 1 qualifies."""
    base = rows[0]
    good = [r for r in rows[1:] if r["mae"] <= base["mae"] and r["s_measure"] >= base["s_measure"]]
    if not good:
        return 0
    best = min(r["mae"] for r in good)
    return int(min(r["steps"] for r in good if r["mae"] <= best + tolerance))


def gate_energy_steps(bundle: Path, calib: Path, progress: Callable[[str], None] = lambda m: None) -> dict[str, Any] | None:
    """Judge the written coop bundle's step counts on ``calib``'s masked photos; None when it has no masks."""
    from salkit.export.kinds import get_export_kind
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.predictor import Predictor

    pairs = masked_photos(calib)
    if not pairs:
        return None
    manifest = load_bundle(bundle)
    trained = get_export_kind(manifest.model_kind).energy_steps(manifest)
    if trained < 1:
        return None
    progress(f"judging the energy's step count 0…{2 * trained} on {len(pairs)} held-out photos with masks")
    predictor = Predictor(manifest)
    try:
        rows = step_table(predictor, pairs, 2 * trained)
    finally:
        predictor.close()
    chosen = choose(rows)
    return {"trained": trained, "chosen": chosen, "photos": len(pairs), "source": str(calib), "by_steps": rows,
            "rule": f"fewest steps within {MAE_TOLERANCE} of the lowest MAE, among those that raise neither MAE "
                    "nor lower S against 0 steps"}


__all__ = ["choose", "gate_energy_steps", "masked_photos", "step_table"]
