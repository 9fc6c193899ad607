"""``sal-runtime refine``: the energy model alone refines saliency maps produced by another model."""

from __future__ import annotations

import sys

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.runtime.cli.common import input_folder, input_folder_options, plan_options


@click.command(name="refine")
@click.option("--engine", "bundle", required=True, type=click.Path(), help="A cooperative (coop) bundle directory.")
@input_folder_options("Folder of images (required).")
@click.option("--maps", "maps_dir", required=True, type=click.Path(), help="Folder of saliency maps to refine, paired by file stem.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for the refined <stem>.png maps.")
@click.option("--steps", type=int, help="Langevin steps K (default: the bundle's refine count, judged at export on other "
              "models' maps; else its predict's K).")
@plan_options
@click.option("--batch-size", type=int, help="Images per engine call (default: the bundle's optimal batch).")
@click.option("--strict", is_flag=True, help="Abort (exit 2, nothing written) on the first unreadable file.")
@report_user_errors
def refine(
    bundle: str, images_dir: str | None, images_alias: str | None, maps_dir: str, out_dir: str, steps: int | None,
    backend: str, precision: str, threads: int | None, batch_size: int | None, strict: bool,
) -> None:
    """Langevin revision of existing maps under the bundle's energy (paper §6.3).

    Maps are read as grayscale in [0, 1] and descended at the bundle's input size; the change the
    steps made is resized to each image's size and added to its map. Unreadable pairs are reported
    and skipped (exit code 1) unless --strict.
    """
    from salkit.base.images import decode_image, pair_by_stem, read_mask, save_png_map
    from salkit.runtime.cli.common import Failures, check_out_dir, chunks, progress
    from salkit.runtime.predictor import Predictor

    images_dir = input_folder(images_dir, images_alias, required=True)
    pairs = pair_by_stem(images_dir, maps_dir, what_a="image folder", what_b="map folder")
    out = check_out_dir(out_dir)
    failures = Failures(strict)

    def load(pair):
        image_path, map_path = pair
        image, map01 = decode_image(image_path), read_mask(map_path)
        height, width = image.shape[:2]
        if height != width and map01.shape == (width, height):
            raise SalkitError(
                f"map {map_path} is {map01.shape} (H, W), its photo {image_path.name} turned by 90° (displayed "
                f"{(height, width)}); maps must be in the photo's displayed orientation (EXIF rotation applied)"
            )
        return image, map01

    if strict:
        for pair in pairs:
            try:
                load(pair)
            except SalkitError as err:
                failures.add(pair[0].stem, err)
    with Predictor.from_bundle(bundle, backend=backend, precision=precision, threads=threads) as predictor:
        click.echo(f"{predictor.kind} bundle {bundle}, {predictor.plan_line}", err=True)
        if not predictor.runtime_kind.refines:
            raise SalkitError(f"refine needs a cooperative (coop) bundle with an energy graph; {bundle} is {predictor.kind}")
        k = predictor.runtime_kind.refine_steps(predictor.manifest, steps)
        click.echo(f"refine: {k} Langevin step{'s' if k != 1 else ''} ({'--steps' if steps is not None else 'the bundle default'})", err=True)
        size = batch_size or int(predictor.manifest.batch.get("opt", 1) or 1)
        if size < 1:
            raise SalkitError(f"--batch-size must be >= 1, got {size}")
        done = 0
        bar = progress(len(pairs), "refine")
        for group in chunks(pairs, size):
            loaded = []
            for pair in group:
                try:
                    loaded.append((pair, *load(pair)))
                except SalkitError as err:
                    failures.add(pair[0].stem, err)
            if loaded:
                refined = predictor.refine([img for _, img, _ in loaded], [m for _, _, m in loaded], steps=steps)
                for ((image_path, _), _, _), map01 in zip(loaded, refined, strict=True):
                    save_png_map(out / f"{image_path.stem}.png", map01)
                    done += 1
            bar.update(len(group))
        bar.close()
    click.echo(f"{done} refined map(s) written to {out}", err=True)
    code = failures.summary(done)
    if code:
        sys.exit(code)

