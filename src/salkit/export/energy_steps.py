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

``refine`` revises *other* models' maps, and the bundle's own Ŷ says little about them (a strong
map of another model can be moved the wrong way by steps that help Ŷ). Given those models' maps of
the same photographs (``--refine-maps DIR``: one PNG per photo, named by its stem, at any size), the
export judges ``refine`` itself, as a user calls it, for k = 0 … 2K on each folder, and keeps for
``refine`` (``coop["refine_steps"]``, table in ``extra["refine_steps"]``) the fewest steps within the
tolerance of each folder's lowest MAE among the k that harm no folder; 0 when none qualifies.
Without such maps ``refine`` takes the predict's count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from salkit.base.errors import SalkitError

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
    return choose_for_all([rows], tolerance)


def choose_for_all(tables: list[list[dict[str, float]]], tolerance: float = MAE_TOLERANCE) -> int:
    """``choose`` over several tables of the same k: a k qualifies when it harms no table, and the fewest
    qualifying steps within ``tolerance`` of every table's lowest qualifying MAE is kept; 0 when none is."""
    def harmless(k: int) -> bool:
        return all(t[k]["mae"] <= t[0]["mae"] and t[k]["s_measure"] >= t[0]["s_measure"] for t in tables)

    good = [k for k in range(1, min(len(t) for t in tables)) if harmless(k)]
    if not good:
        return 0
    best = [min(t[k]["mae"] for k in good) for t in tables]
    near = [k for k in good if all(t[k]["mae"] <= b + tolerance for t, b in zip(tables, best, strict=True))]
    if near:
        return int(min(near))
    return int(min(good, key=lambda k: sum(t[k]["mae"] for t in tables)))  # no k near every table's best


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


def other_maps(folder: Path, pairs: list[tuple[Path, Path]]) -> list[Path]:
    """The map of each (photo, mask) pair in ``folder`` (``<photo stem>.png``); a missing one is one line."""
    if not folder.is_dir():
        raise SalkitError(f"--refine-maps {folder} is not a folder")
    found = {p.stem: p for p in folder.iterdir() if p.suffix.lower() == ".png"}
    missing = [photo.name for photo, _ in pairs if photo.stem not in found]
    if missing:
        raise SalkitError(f"--refine-maps {folder} has no map for {len(missing)} of the {len(pairs)} held-out photos "
                          f"(first: {missing[0]}; expected {Path(missing[0]).stem}.png)")
    return [found[photo.stem] for photo, _ in pairs]


def refine_table(predictor: Any, pairs: list[tuple[Path, Path]], maps: list[Path], max_steps: int) -> list[dict[str, float]]:
    """Mean MAE and S of ``refine`` (the user's call: photo and map at the photo's size) after k = 0 … ``max_steps``."""
    from salkit.base.images import decode_gray, decode_image, read_mask
    from salkit.base.metrics import per_image_scores

    photos = [decode_image(photo) for photo, _ in pairs]
    gts = [decode_gray(mask) > 128 for _, mask in pairs]
    starts = [read_mask(path) for path in maps]
    for start, gt, path in zip(starts, gts, maps, strict=True):
        if start.shape != gt.shape:
            raise SalkitError(f"--refine-maps {path} is {start.shape} (H, W), its photo's mask {gt.shape}")
    rows = []
    for k in range(max_steps + 1):
        revised = starts if k == 0 else predictor.refine(photos, starts, steps=k)
        scores = per_image_scores([np.clip(m, 0.0, 1.0) for m in revised], gts)
        rows.append({"steps": k, "mae": float(scores["mae"].mean()), "s_measure": float(scores["s_measure"].mean())})
    return rows


def gate_refine_steps(bundle: Path, calib: Path, folders: Sequence[Path],
                      progress: Callable[[str], None] = lambda m: None) -> dict[str, Any] | None:
    """Judge ``refine``'s step counts on other models' maps of ``calib``'s masked photos; None without folders."""
    from salkit.export.kinds import get_export_kind
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.predictor import Predictor

    if not folders:
        return None
    pairs = masked_photos(calib)
    if not pairs:
        raise SalkitError(f"--refine-maps needs --calib photos with masks (a dataset root with gt/); {calib} has none")
    names = [folder.name for folder in folders]  # distinct: export_bundle checks them before any work
    maps = {folder.name: other_maps(folder, pairs) for folder in folders}
    manifest = load_bundle(bundle)
    trained = int(manifest.extra.get("energy_steps", {}).get("trained", get_export_kind(manifest.model_kind).energy_steps(manifest)))
    if trained < 1:
        return None
    progress(f"judging refine's step count 0…{2 * trained} on {len(pairs)} held-out photos' maps of {', '.join(names)}")
    predictor = Predictor(manifest)
    try:
        tables = {name: refine_table(predictor, pairs, paths, 2 * trained) for name, paths in maps.items()}
    finally:
        predictor.close()
    return {"trained": trained, "chosen": choose_for_all(list(tables.values())), "photos": len(pairs),
            "by_source": tables, "rule": f"fewest steps within {MAE_TOLERANCE} of each source's lowest MAE, among "
            "those that raise no source's MAE nor lower its S against 0 steps"}


__all__ = ["choose", "choose_for_all", "gate_energy_steps", "gate_refine_steps", "masked_photos", "other_maps",
           "refine_table", "step_table"]
