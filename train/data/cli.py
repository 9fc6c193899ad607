"""``sal-data``: dataset tools (procedural synthetic dataset, layout checks)."""

from __future__ import annotations

import click

from salkit.kernels.errors import report_user_errors


@click.group(name="sal-data", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Dataset tools: generate a synthetic saliency dataset, check a dataset tree."""


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
@report_user_errors
def check(root: str) -> None:
    """Validate a dataset tree: pairing, sizes, mask and scribble values, scribble/mask agreement."""
    from salkit.base.layout import check_dataset

    report = check_dataset(root)
    labels = [name for name in ("masks", "scribbles") if report[name]]
    line = f"ok: {report['samples']} samples in {report['root']} ({', '.join(labels)})"
    if report["non_binary_masks"]:
        line += f"; {report['non_binary_masks']} masks are not strictly binary (values other than 0/255)"
    if "scribble_fraction" in report:
        line += f"; scribbles cover {100 * float(report['scribble_fraction']):.1f}% of pixels"
    click.echo(line)
