"""`train-qefpn`: train a QE-FPN saliency model on a DUTS-layout folder (image + mask pairs).

Presets fix model and schedule together: ``paper`` (resnet50, 352², batch 32, 50 epochs, solver
warm-up 3000 steps) and ``tiny`` (plain tiny backbone, 64², batch 4, 3 epochs, warm-up 20 steps)
for CPU demos and tests. Any option given explicitly overrides the preset; options left out keep it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.train.engine.cli_options import backbone_options, resolve_backbone_weights

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 50, "batch_size": 32, "solver_warmup_steps": 3000, "lr_warmup_steps": 500},
    "tiny": {"epochs": 3, "batch_size": 4, "solver_warmup_steps": 20, "lr_warmup_steps": 5},
    # Real photographs from an ImageNet EfficientNet-Lite0 (experiments/real_trials.py).
    "lite": {"epochs": 1, "batch_size": 8, "solver_warmup_steps": 200, "lr_warmup_steps": 50},
}
SOLVER_CHOICES = ("quasi", "equilibrium", "unrolled")
EDGE_CHOICES = ("sobel", "prewitt", "frei-chen", "laplacian", "none")


@click.command(name="train-qefpn", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Training folder (img/ + gt/).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: last.pt, log.csv, grids/.")
@click.option("--split", default=None,
              help="Train on the ids a split file lists: a name N for DATA/N.txt (PASCAL-S: train) or a file path.")
@click.option("--crop", type=float, default=0.75, show_default=True,
              help="Augmentation: random crops covering this fraction (or more) of each side, besides the flip; 1 = flip only.")
@click.option("--preset", type=click.Choice(sorted(TRAIN_PRESETS)), default="paper", show_default=True)
@click.option("--solver", type=click.Choice(SOLVER_CHOICES), default=None, help="Forward solver (model default: quasi).")
@click.option("--edge", type=click.Choice(EDGE_CHOICES), default="sobel", show_default=True, help="Edge operator of the loss.")
@backbone_options
@click.option("--size", "--image-size", "image_size", type=int, default=None, help="Training side S (multiple of 32).")
@click.option("--width", type=int, default=None, help="Pyramid channels per level.")
@click.option("--f-max-iter", type=int, default=None, help="Forward Broyden iterations.")
@click.option("--f-tol", type=float, default=None, help="Forward relative-residual tolerance.")
@click.option("--b-max-iter", type=int, default=None, help="Backward (implicit gradient) Broyden iterations.")
@click.option("--memory", type=int, default=None, help="Broyden low-rank memory.")
@click.option("--drop-prob", type=float, default=None, help="Quasi-equilibrium Bernoulli drop probability p.")
@click.option("--unrolled-layers", type=int, default=None, help="Layers of the unrolled solver and the warm-up.")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr-backbone", type=float, default=0.005, show_default=True)
@click.option("--lr-rest", type=float, default=0.05, show_default=True)
@click.option("--solver-warmup", "solver_warmup_steps", type=int, default=None, help="Steps trained unrolled first.")
@click.option("--lr-warmup", "lr_warmup_steps", type=int, default=None, help="Steps of linear learning-rate warm-up.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", type=click.Path(dir_okay=False), default=None, help="Checkpoint to continue exactly.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps in total.")
@click.option("--checkpoint-every", type=int, default=50, show_default=True)
@click.option("--grid-every", type=int, default=100, show_default=True, help="0 = no PNG grids.")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader workers (0 keeps resume exact).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Start over in an OUT that already holds a run.")
@report_user_errors
def main(**opts: Any) -> None:
    """Train QE-FPN (quasi-equilibrium feature pyramid) with an edge-aware loss."""
    run(**opts)


def run(**opts: Any) -> Path:
    from salkit.train.data.dataset import SaliencyDataset
    from salkit.train.engine.registry import create_model
    from salkit.train.engine.trainer import LoopOptions
    from salkit.train.qefpn.trainer import QEFPNSettings, QEFPNTrainer

    preset = opts["preset"]
    schedule = {k: opts.get(k) if opts.get(k) is not None else v for k, v in TRAIN_PRESETS[preset].items()}
    for key in ("epochs", "batch_size"):
        if schedule[key] < 1:
            raise SalkitError(f"--{key.replace('_', '-')} must be >= 1, got {schedule[key]}")
    out = Path(opts["out"])
    if (out / "last.pt").exists() and opts["resume"] is None and not opts["force"]:
        raise SalkitError(f"{out} already holds a run (last.pt); pass --resume {out / 'last.pt'} or --force")
    import torch

    torch.manual_seed(opts["seed"])  # the initial weights depend on --seed alone
    from salkit.train.qefpn.model import PRESETS

    # A resumed run takes every weight from its checkpoint; a new one starts its backbone as told.
    weights = None if opts["resume"] else resolve_backbone_weights(
        opts["backbone_weights"], opts["backbone"] or PRESETS[preset]["backbone"])
    model = create_model(
        "qefpn", preset=preset, solver=opts["solver"], backbone=opts["backbone"],
        backbone_weights=weights, image_size=opts["image_size"], width=opts["width"],
        f_max_iter=opts["f_max_iter"], f_tol=opts["f_tol"], b_max_iter=opts["b_max_iter"], memory=opts["memory"],
        drop_prob=opts["drop_prob"], unrolled_layers=opts["unrolled_layers"],
    )
    if not 0 < opts["crop"] <= 1:
        raise SalkitError(f"--crop must lie in (0, 1], got {opts['crop']}")
    dataset = SaliencyDataset(opts["data"], model.image_size, labels="mask", split=opts["split"], augment=True,
                              scale=(opts["crop"], 1.0))
    if not opts["no_progress"]:
        click.echo(dataset.describe(), err=True)
    options = LoopOptions(
        out=str(out), epochs=schedule["epochs"], batch_size=schedule["batch_size"], seed=opts["seed"],
        checkpoint_every=opts["checkpoint_every"], grid_every=opts["grid_every"], num_workers=opts["workers"],
        progress=not opts["no_progress"], max_steps=opts["max_steps"],
    )
    settings = QEFPNSettings(
        edge=opts["edge"], solver=None, solver_warmup_steps=schedule["solver_warmup_steps"],
        lr_backbone=opts["lr_backbone"], lr_rest=opts["lr_rest"], lr_warmup_steps=schedule["lr_warmup_steps"],
    )
    return QEFPNTrainer(model, dataset, options, settings).fit(opts["resume"])
