"""``sal-runtime predict``: saliency maps (and uncertainty) for an image or a folder of images."""

from __future__ import annotations

import sys

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.runtime.cli.common import plan_options


@click.command(name="predict")
@click.option("--engine", "bundle", required=True, type=click.Path(), help="Bundle directory written by export-trt.")
@click.option("--input", "source", required=True, type=click.Path(), help="An image file or a folder of images.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for <stem>.png maps (created if absent).")
@click.option("--uncertainty", is_flag=True, help="Also write <stem>_uncertainty.png (predictive entropy / ln 2; coop only).")
@click.option("--grid", "grid", type=click.Path(dir_okay=False), help="Write a side-by-side picture (image | map | uncertainty), columns labelled.")
@click.option("--grid-gt", "grid_gt", type=click.Path(file_okay=False), help="Masks paired by stem: adds a ground-truth column to --grid.")
@click.option("--limit", type=int, help="Process at most N images (sorted by name).")
@click.option("--samples", type=int, help="Latent samples N (default: the bundle's).")
@click.option("--steps", type=int, help="Langevin steps K, or Broyden iterations for QE-FPN (default: the bundle's).")
@click.option("--noise", is_flag=True, help="Langevin with noise (stochastic maps) instead of the noise-free steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latent samples (and noise).")
@plan_options
@click.option("--batch-size", type=int, help="Images per engine call (default: the bundle's optimal batch).")
@click.option("--strict", is_flag=True, help="Abort (exit 2, nothing written) on the first unreadable image.")
@report_user_errors
def predict(
    bundle: str,
    source: str,
    out_dir: str,
    uncertainty: bool,
    grid: str | None,
    grid_gt: str | None,
    limit: int | None,
    samples: int | None,
    steps: int | None,
    noise: bool,
    seed: int,
    backend: str,
    precision: str,
    threads: int | None,
    batch_size: int | None,
    strict: bool,
) -> None:
    """Write a saliency map per image at the image's own size.

    A file that cannot be read is reported and skipped (the exit code is then 1); --strict
    aborts instead. Every PNG is written atomically.
    """
    import numpy as np

    from salkit.base.images import decode_image, save_png_map
    from salkit.runtime.cli.common import ENTROPY_MAX, Failures, check_out_dir, chunks, input_files, progress, write_grid
    from salkit.runtime.predictor import Predictor

    files = input_files(source, limit)
    if grid_gt and not grid:
        raise SalkitError("--grid-gt needs --grid (the ground truth is a column of that picture)")
    masks = _masks_by_stem(grid_gt, files) if grid_gt else {}
    out = check_out_dir(out_dir)
    failures = Failures(strict)
    if strict:  # decode everything once up front: a bad file aborts before any output exists
        for file in files:
            try:
                decode_image(file)
            except SalkitError as err:
                failures.add(file.name, err)
    with Predictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads) as predictor:
        click.echo(f"{predictor.kind} bundle {bundle}, {predictor.plan_line}", err=True)
        if uncertainty and not predictor.runtime_kind.uncertainty:
            raise SalkitError(f"--uncertainty needs a cooperative (coop) bundle; {bundle} is {predictor.kind}")
        size = batch_size or int(predictor.manifest.batch.get("opt", 1) or 1)
        if size < 1:
            raise SalkitError(f"--batch-size must be >= 1, got {size}")
        grid_rows = []
        done = 0
        bar = progress(len(files), "predict")
        for index, group in enumerate(chunks(files, size)):
            decoded = []
            for file in group:
                try:
                    decoded.append((file, decode_image(file)))
                except SalkitError as err:
                    failures.add(file.name, err)
            if decoded:
                result = predictor.predict(
                    [img for _, img in decoded], samples=samples, steps=steps, noise=noise,
                    uncertainty=uncertainty, seed=None if seed is None else seed + index,
                )
                for i, (file, image) in enumerate(decoded):
                    save_png_map(out / f"{file.stem}.png", result.saliency[i])
                    row = [image, *([masks[file.stem]] if masks else []), result.saliency[i]]
                    if uncertainty and result.uncertainty is not None:
                        scaled = np.clip(result.uncertainty["predictive"][i] / ENTROPY_MAX, 0.0, 1.0)
                        save_png_map(out / f"{file.stem}_uncertainty.png", scaled)
                        row.append(scaled)
                    if grid:
                        grid_rows.append(row)
                    done += 1
            bar.update(len(group))
        bar.close()
        if grid:
            labels = ["image", *(["ground truth"] if masks else []), "saliency", *(["uncertainty (entropy)"] if uncertainty else [])]
            write_grid(grid, grid_rows, labels=labels)
    click.echo(f"{done} map(s) written to {out}" + (f", grid {grid}" if grid else ""), err=True)
    code = failures.summary(done)
    if code:
        sys.exit(code)


def _masks_by_stem(folder: str, files: list) -> dict:
    """The ground-truth masks (binarised at > 128, as evaluation does) of the files to predict, by stem."""
    from pathlib import Path

    import numpy as np

    from salkit.base.images import decode_gray, format_paths, list_images

    found = {path.stem: path for path in list_images(folder, what="--grid-gt folder")}
    missing = [file.name for file in files if file.stem not in found]
    if missing:
        raise SalkitError(f"--grid-gt {Path(folder)} has no mask for {format_paths(missing)}")
    masks = {}
    for file in files:
        gray = decode_gray(found[file.stem])
        masks[file.stem] = (gray > (128 if gray.max(initial=0) > 1 else 0)).astype(np.float32)
    return masks
