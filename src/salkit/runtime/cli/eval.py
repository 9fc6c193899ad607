"""``sal-runtime eval``: saliency metrics of a prediction folder against a ground-truth folder."""

from __future__ import annotations

import click

from salkit.base.errors import report_user_errors


@click.command(name="eval")
@click.option("--pred", "pred_dir", required=True, type=click.Path(), help="Folder of predicted maps (PNG, any size).")
@click.option("--gt", "gt_dir", required=True, type=click.Path(), help="Folder of ground-truth masks; pairs by file stem.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write all metrics and curves as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write PR and F/E-threshold curves as PNG.")
@click.option(
    "--no-minmax", is_flag=True, help="Score maps as they are instead of min-max scaling each (the standard toolkits scale)."
)
@report_user_errors
def eval_command(pred_dir: str, gt_dir: str, json_path: str | None, plot_path: str | None, no_minmax: bool) -> None:
    """MAE, F-measures (β²=0.3), weighted F, S-measure, E-measures and binary ratio via PySODMetrics.

    Predictions are resized to their ground truth's size. Nothing is written unless every pair
    was read and scored.
    """
    from salkit.base.metrics import evaluate_dirs, format_table, write_reports

    results = evaluate_dirs(pred_dir, gt_dir, minmax=not no_minmax)
    write_reports(results, json_path=json_path, plot_path=plot_path)
    click.echo(format_table(results))
    for label, path in (("metrics", json_path), ("curves", plot_path)):
        if path:
            click.echo(f"{label} written to {path}")
