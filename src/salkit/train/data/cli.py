"""``sal-data``: dataset tools (procedural synthetic dataset, layout checks)."""

from __future__ import annotations

import click

from salkit.base.errors import report_user_errors


@click.group(name="sal-data", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Dataset tools: generate a synthetic dataset, check a dataset tree, derive scribbles, link a split."""


@main.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Dataset folder to create.")
@click.option("--n", "n", default=100, show_default=True, type=int, help="Number of scenes.")
@click.option("--size", default=128, show_default=True, type=int, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Scene i depends only on (seed, i).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (only once the new one is complete).")
@report_user_errors
def synth(out: str, n: int, size: int, seed: int, force: bool) -> None:
    """Write a procedural salient-object dataset: img/*.jpg, gt/*.png (0/255), scribble/*.png (S-DUTS 0/1/2)."""
    from salkit.train.data.synth import write_dataset

    stats = write_dataset(out, n=n, size=size, seed=seed, force=force)
    click.echo(f"wrote {n} scenes of {size}x{size} to {out} ({stats['images_per_second']:.0f} images/s)")


@main.command()
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--split", default=None, help="Check only the ids of a split: a name N for ROOT/N.txt, or a file path.")
@report_user_errors
def check(root: str, split: str | None) -> None:
    """Validate a dataset tree: pairing, sizes, mask and scribble values, scribble/mask agreement."""
    from salkit.base.layout import check_dataset

    report = check_dataset(root, split)
    labels = [name for name in ("masks", "scribbles") if report[name]]
    line = f"ok: {report['samples']} samples in {report['root']} ({', '.join(labels)})"
    if report["non_binary_masks"]:
        line += (f"; {report['non_binary_masks']} masks are graded (values other than 0/255): foreground is > 128, "
                 "as in training and evaluation")
    if "scribble_fraction" in report:
        line += f"; scribbles cover {100 * float(report['scribble_fraction']):.1f}% of pixels"
    click.echo(line)


@main.command()
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset with masks (img/ + gt/).")
@click.option("--split", required=True, help="A name N for DATA/N.txt, or a split file path: the ids to scribble.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="S-DUTS-layout folder to create.")
@click.option("--seed", default=0, show_default=True, type=int, help="The strokes of an id depend only on (seed, id).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists (only once the new one is complete).")
@report_user_errors
def scribbles(data: str, split: str, out: str, seed: int, force: bool) -> None:
    """Derive scribbles from masks: OUT/scribble/<id>.png (1 = fg, 2 = bg, 0 = unknown), links to DATA's img/, gt/, split."""
    from pathlib import Path

    from salkit.train.data.scribbles import write_scribbles

    stats = write_scribbles(data, split, out, seed=seed, force=force)
    click.echo(f"wrote {int(stats['images'])} scribbles to {out}/scribble (foreground {100 * stats['foreground_fraction']:.2f}%, "
               f"background {100 * stats['background_fraction']:.2f}% of pixels); "
               f"train with: train-coop --scribble --data {out} --split {Path(split).stem}")


@main.command(name="link-split")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Dataset with masks (img/ + gt/).")
@click.option("--split", required=True, help="A name N for DATA/N.txt, or a split file path.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to create: img/ and gt/ of links.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@report_user_errors
def link_split_command(data: str, split: str, out: str, force: bool) -> None:
    """A folder of links to one split's images and masks, for sal-runtime predict / eval (nothing is copied)."""
    from salkit.train.data.scribbles import link_split

    count = link_split(data, split, out, force=force)
    click.echo(f"linked {count} image/mask pairs of split {split} into {out}/img and {out}/gt")
