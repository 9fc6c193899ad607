"""`make real`'s maps and picture: every model's test-split maps at each photo's own size, 6 of them drawn.

The two bundles run through the runtime's Python API (what a user deploys; in float32 on ONNX Runtime): coop Ŷ (the
generator's mean over latent samples), Ỹ (after the energy's K Langevin steps), epistemic
uncertainty; QE-FPN. The baselines that have no bundle — G(X) with h = 0, G(X,h) alone (mean
over latent samples) and the scribble-trained coop model — run through the torch reference
(``salkit.train.coop.predictor``, the algorithm the runtime runs; tests hold the two equal), with
the runtime's seed convention. ``refine`` revises the QE-FPN's and G(X)'s maps with the coop
bundle's energy. Trivial references: the all-zero map and a centred Gaussian (σ = 0.3 of each side).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

EPISTEMIC_SCALE = math.log(2.0)  # entropy maps (nats) are shown divided by their maximum, ln 2
PICTURE_COLUMNS = ["photo", "ground truth", "Ŷ (generator)", "Ỹ after the energy", "epistemic uncertainty", "QE-FPN"]
# results.json row → maps/<folder>, and the training job a row needs (None: always there).
MAP_FOLDERS = {
    "coop Ŷ": "coop_yhat", "coop Ỹ": "coop_ytilde", "G(X)": "gx", "G(X,h) alone": "gxh", "QE-FPN": "qefpn",
    "coop Ŷ, scribbles": "scribble_yhat", "coop Ỹ, scribbles": "scribble_ytilde",
    "QE-FPN + refine": "qefpn_refined", "G(X) + refine": "gx_refined",
    "all-zero map": "zero", "centred Gaussian": "gaussian",
}
NEEDS_JOB = {"gxh": "gxh", "scribble_yhat": "scribble", "scribble_ytilde": "scribble"}


def rows_for(jobs: dict[str, Any]) -> dict[str, str]:
    """The rows (name → folder) a recipe's jobs give."""
    return {row: folder for row, folder in MAP_FOLDERS.items() if NEEDS_JOB.get(folder, "coop") == "coop" or NEEDS_JOB[folder] in jobs}


def centred_gaussian(height: int, width: int, sigma: float = 0.3) -> np.ndarray:
    """exp(−½((y − cy)²/(σH)² + (x − cx)²/(σW)²)) at the photo's own size; 1 at the centre."""
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def torch_maps(checkpoint: Path, photos: list[np.ndarray], kind: str, seeds: list[int] | None = None) -> dict[str, list[np.ndarray]]:
    """A coop checkpoint's maps through the torch reference, resized back to each photo's size.

    ``kind``: "h0" — G(X) with h = 0; "latent" — Ŷ only (an untrained energy is not used); "coop" — Ŷ and Ỹ;
    "descent" — Ŷ and the energy's noise-free descent from it for k = 1 … 2K steps ("k1", "k2", …).
    ``seeds``: each photo's latent seed (default its position), the runtime's convention.
    """
    return torch_mapper(checkpoint, kind)(photos, seeds)


def torch_mapper(checkpoint: Path, kind: str) -> Callable[..., dict[str, list[np.ndarray]]]:
    """``torch_maps`` with the checkpoint loaded once: (photos, seeds=None) → the maps, as ``torch_maps``."""
    import torch

    from salkit.base.images import preprocess, resize_map
    from salkit.kernels import coop
    from salkit.train.coop.predictor import predict_tensor, refine_tensor
    from salkit.train.engine.checkpoint import build_model, load_checkpoint

    ckpt = load_checkpoint(checkpoint, expect_kind="coop")
    model = build_model(ckpt).eval()
    recorded = ckpt.get("train_config", {}).get("coop") or {}
    steps, step_size = int(recorded.get("langevin_steps", 5)), float(recorded.get("energy_step", 0.4))

    def maps_of(photos: list[np.ndarray], seeds: list[int] | None = None) -> dict[str, list[np.ndarray]]:
        maps: dict[str, list[np.ndarray]] = {"yhat": [], "ytilde": []}
        for i, photo in enumerate(photos):
            seed = seeds[i] if seeds is not None else i
            back = lambda m, shape=photo.shape[:2]: np.clip(resize_map(m[0, 0].numpy(), shape), 0.0, 1.0)
            x = torch.from_numpy(preprocess([photo], model.image_size))
            if kind == "h0":
                with torch.no_grad():
                    maps["yhat"].append(back(torch.sigmoid(model.generator(x, torch.zeros(1, model.generator.latent_dim)))))
                continue
            latents, _ = coop.random_inputs(seed, samples=10, batch=1, latent_dim=model.generator.latent_dim, steps=steps,
                                            size=model.image_size, noise=False)  # (N,1,d): the runtime's seed convention
            out = predict_tensor(model, x, torch.from_numpy(latents), steps if kind == "coop" else 0, step_size,
                                 uncertainty=False)
            maps["yhat"].append(back(out["generator"]))
            if kind == "coop":
                maps["ytilde"].append(back(out["saliency"]))
            for k in range(1, 2 * steps + 1) if kind == "descent" else ():
                maps.setdefault(f"k{k}", []).append(back(refine_tensor(model, x, out["generator"], k, step_size)))
        return maps

    return maps_of


def calib_maps(out: Path) -> list[Path]:
    """G(X)'s (h = 0) and the QE-FPN's maps of the held-out photos that gate the exports (``<out>/calib``), through
    the torch references, into ``<out>/calib_maps/{gx,qefpn}``: what the coop export judges refine's steps on
    (``export-trt --refine-maps``). The first held-out photos, never the test set."""
    import torch

    from salkit.base.atomic import atomic_directory
    from salkit.base.images import decode_image, preprocess, resize_map, save_png_map
    from salkit.export.energy_steps import masked_photos
    from salkit.train.qefpn.predict import QEFPNReferencePredictor

    torch.set_num_threads(1)
    photos = [photo for photo, _ in masked_photos(out / "calib")]
    images = [decode_image(p) for p in photos]
    qefpn = QEFPNReferencePredictor.from_checkpoint(out / "qefpn" / "last.pt")
    maps = {"gx": torch_maps(out / "gx" / "last.pt", images, "h0")["yhat"],
            "qefpn": [np.clip(resize_map(qefpn.predict_tensor(preprocess([im], qefpn.image_size))["saliency"][0, 0], im.shape[:2]),
                              0.0, 1.0) for im in images]}
    folders = []
    for name, arrays in maps.items():
        with atomic_directory(out / "calib_maps" / name, force=True) as tmp:
            for photo, array in zip(photos, arrays, strict=True):
                save_png_map(tmp / f"{photo.stem}.png", array)
        folders.append(out / "calib_maps" / name)
    return folders


def map_folders(out: Path, jobs: dict[str, Any]) -> dict[str, Path]:
    return {key: out / "maps" / key for key in [*rows_for(jobs).values(), "coop_epistemic"]}


def maps_shard(out: Path, jobs: dict[str, Any], shard: int, shards: int) -> int:
    """The maps of every ``shards``-th test photo from the ``shard``-th, on one thread; seeds are the
    photos' positions in the whole test set, so the maps do not depend on the sharding."""
    import sys

    import torch

    from salkit.base.images import decode_image, list_images, resize_map, save_png_map
    from salkit.runtime.inputs import to_batch
    from salkit.runtime.predictor import Predictor

    torch.set_num_threads(1)
    every = list_images(out / "test" / "img")
    indices = list(range(shard, len(every), shards))
    paths = [every[i] for i in indices]
    photos = [decode_image(p) for p in paths]
    folders = map_folders(out, jobs)
    write = lambda key, k, m: save_png_map(folders[key] / f"{paths[k].stem}.png", np.clip(m, 0.0, 1.0))
    by_torch = {"gx": torch_maps(out / "gx" / "last.pt", photos, "h0", indices)["yhat"]}
    if "gxh" in jobs:
        by_torch["gxh"] = torch_maps(out / "gxh" / "last.pt", photos, "latent", indices)["yhat"]
    if "scribble" in jobs:
        scribble = torch_maps(out / "scribble" / "last.pt", photos, "coop", indices)
        by_torch["scribble_yhat"], by_torch["scribble_ytilde"] = scribble["yhat"], scribble["ytilde"]
    # float32 named, not "auto": auto may probe a reduced-precision variant per process, and the shards
    # must run one plan (the gate bounds what a reduced plan changes; the maps judge the models).
    with Predictor.from_bundle(out / "bundle_coop", backend="ort-cpu", precision="fp32", threads=1) as coop, \
            Predictor.from_bundle(out / "bundle_qefpn", backend="ort-cpu", precision="fp32", threads=1) as qefpn:
        size = coop.manifest.input_size
        predict_steps = int(coop.manifest.coop.get("langevin_steps", 0))
        for k, (photo, i) in enumerate(zip(photos, indices, strict=True)):
            x = to_batch([photo], size, coop.manifest.mean, coop.manifest.std).x
            first = coop.predict_tensor(x, steps=0, seed=i)  # Ŷ: the mean over latent samples, no descent
            # Ỹ: the predict's K Langevin steps on U (refine's own default may be judged apart, on other models' maps)
            y_tilde = coop.refine_tensor(x, first["saliency"], steps=predict_steps)
            back = lambda m, shape=photo.shape[:2]: resize_map(m[0, 0], shape)
            write("coop_yhat", k, back(first["saliency"]))
            write("coop_ytilde", k, back(y_tilde))
            write("coop_epistemic", k, back(first["epistemic"]) / EPISTEMIC_SCALE)
            q = qefpn.predict(photo, seed=i).saliency[0]
            write("qefpn", k, q)
            write("qefpn_refined", k, coop.refine(photo, q)[0])
            write("gx_refined", k, coop.refine(photo, by_torch["gx"][k])[0])
            for key, maps in by_torch.items():
                write(key, k, maps[k])
            write("zero", k, np.zeros(photo.shape[:2], np.float32))
            write("gaussian", k, centred_gaussian(*photo.shape[:2]))
            if k % 50 == 0:
                print(f"      maps (shard {shard + 1}/{shards}): {k + 1}/{len(paths)} photos", file=sys.stderr, flush=True)
    return len(paths)


def stage_maps(out: Path, jobs: dict[str, Any], coop_name: str, echo: Callable[[str], None], workers: int = 2) -> dict[str, Any]:
    """Every row's maps of the test photos, in ``workers`` processes of one thread each (one shard of
    the photos each): the torch references for the models without a bundle, the bundles through the runtime."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    echo(f"      maps of {', '.join(rows_for(jobs))} in {workers} processes")
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        counts = list(pool.map(maps_shard, *zip(*[(out, jobs, shard, workers) for shard in range(workers)], strict=True)))
    return {"photos": sum(counts), "workers": workers, "coop_checkpoint": str(out / coop_name / "last.pt"),
            "folders": {k: str(v) for k, v in map_folders(out, jobs).items()}}


def stage_picture(out: Path, count: int = 6) -> dict[str, Any]:
    """``<out>/examples.png``: ``count`` test photos spread evenly by name, labelled columns."""
    from salkit.base.images import decode_gray, decode_image, list_images, read_mask
    from salkit.runtime.cli.common import write_grid

    paths = list_images(out / "test" / "img")
    shown = min(count, len(paths))
    chosen = [paths[round(i * (len(paths) - 1) / max(1, shown - 1))] for i in range(shown)]
    rows = []
    for path in chosen:
        gt = decode_gray(out / "test" / "gt" / f"{path.stem}.png") > 128
        maps = [read_mask(out / "maps" / key / f"{path.stem}.png") for key in ("coop_yhat", "coop_ytilde", "coop_epistemic", "qefpn")]
        rows.append([decode_image(path), gt.astype(np.float32), *maps])
    write_grid(out / "examples.png", rows, side=160, labels=PICTURE_COLUMNS)
    return {"picture": str(out / "examples.png"), "photos": [p.name for p in chosen]}
