"""`train-qefpn`: train a QE-FPN saliency model on a DUTS-layout folder (image + mask pairs).

Presets fix model and schedule together: ``paper`` (resnet50, 352², batch 32, 50 epochs, solver
warm-up 3000 steps), ``tiny`` (plain tiny backbone, 64², batch 4, 3 epochs, warm-up 20 steps)
for CPU demos and tests, and ``lite`` (EfficientNet-Lite0 from ImageNet, 256²). Any option given
explicitly overrides the preset; options left out keep it. The options train-coop shares are
declared in salkit.train.engine.cli_options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from salkit.base.errors import report_user_errors
from salkit.train.engine import cli_options

# Training defaults per preset over the shared RUN_DEFAULTS; the model presets, image size included,
# live in salkit.train.qefpn.model. The paper's rates: SGD, 0.005 for the backbone, 0.05 for the rest.
# crop 0.75: QE-FPN has always trained with random crops of at least 3/4 of each side (train-coop: flip only).
_PAPER_RATES = {"lr_backbone": 0.005, "lr_rest": 0.05, "edge": "sobel", "crop": 0.75}
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 50, "batch_size": 32, "solver_warmup_steps": 3000, "lr_warmup_steps": 500, **_PAPER_RATES},
    "tiny": {"epochs": 3, "batch_size": 4, "solver_warmup_steps": 20, "lr_warmup_steps": 5, **_PAPER_RATES},
    # Real photographs from an ImageNet EfficientNet-Lite0 (experiments/real_trials.py).
    "lite": {"epochs": 1, "batch_size": 8, "solver_warmup_steps": 200, "lr_warmup_steps": 50, **_PAPER_RATES},
}
SOLVER_CHOICES = ("quasi", "equilibrium", "unrolled")
EDGE_CHOICES = ("sobel", "prewitt", "frei-chen", "laplacian", "none")
MODEL_KEYS = ("solver", "width", "f_max_iter", "f_tol", "b_max_iter", "memory", "drop_prob", "unrolled_layers")


@click.command(name="train-qefpn", epilog=cli_options.presets_epilog(TRAIN_PRESETS),
               context_settings={"help_option_names": ["-h", "--help"]})
@cli_options.train_options(TRAIN_PRESETS)
@click.option("--solver", type=click.Choice(SOLVER_CHOICES), default=None, help="Forward solver (model default: quasi).")
@click.option("--edge", type=click.Choice(EDGE_CHOICES), default=None, help="Edge operator of the loss [the preset's: sobel].")
@click.option("--width", type=int, default=None, help="Pyramid channels per level.")
@click.option("--f-max-iter", type=int, default=None, help="Forward Broyden iterations.")
@click.option("--f-tol", type=float, default=None, help="Forward relative-residual tolerance.")
@click.option("--b-max-iter", type=int, default=None, help="Backward (implicit gradient) Broyden iterations.")
@click.option("--memory", type=int, default=None, help="Broyden low-rank memory.")
@click.option("--drop-prob", type=float, default=None, help="Quasi-equilibrium Bernoulli drop probability p.")
@click.option("--unrolled-layers", type=int, default=None, help="Layers of the unrolled solver and the warm-up.")
@click.option("--lr-backbone", type=float, default=None, help="SGD rate of the backbone [the preset's: 0.005].")
@click.option("--lr-rest", type=float, default=None, help="SGD rate of everything else [the preset's: 0.05].")
@click.option("--solver-warmup", "solver_warmup_steps", type=int, default=None, help="Steps trained unrolled first [the preset's].")
@click.option("--lr-warmup", "lr_warmup_steps", type=int, default=None,
              help="Steps of linear learning-rate warm-up, then a linear decay to 0 [the preset's].")
@report_user_errors
def main(**opts: Any) -> None:
    """Train QE-FPN (quasi-equilibrium feature pyramid) with an edge-aware loss."""
    run(**opts)


def run(**opts: Any) -> Path:
    """Train with the CLI's options (those left out resolve as on the command line); returns last.pt's path."""
    o, _ = cli_options.resolve_run(opts, TRAIN_PRESETS, "qefpn")
    cli_options.check(o)
    for key in ("lr_backbone", "lr_rest"):
        cli_options.positive(key, o[key])
    for key in ("solver_warmup_steps", "lr_warmup_steps"):
        cli_options.positive(key, o[key], allow_zero=True)
    import torch

    from salkit.train.data.dataset import SaliencyDataset
    from salkit.train.engine.checkpoint import load_init_weights
    from salkit.train.engine.registry import create_model
    from salkit.train.qefpn.model import PRESETS
    from salkit.train.qefpn.trainer import QEFPNSettings, QEFPNTrainer

    if o["threads"]:
        torch.set_num_threads(o["threads"])
    torch.manual_seed(o["seed"])  # the initial weights depend on --seed alone
    # A resumed or --init run takes every weight from its checkpoint; a new one starts its backbone as told.
    weights = None if o["resume"] or o["init"] else cli_options.resolve_backbone_weights(
        o["backbone_weights"], o["backbone"] or PRESETS[o["preset"]]["backbone"])
    model = create_model(
        "qefpn", preset=o["preset"], backbone=o["backbone"], backbone_weights=weights, image_size=o["size"],
        **{key: o.get(key) for key in MODEL_KEYS},
    )
    o["size"] = model.image_size  # saved for a resume, as given or as the model preset chose
    if o["init"] is not None:
        load_init_weights(model, o["init"], "qefpn")
    dataset = SaliencyDataset(o["data"], model.image_size, labels="mask", split=o["split"], augment=True,
                              scale=(o["crop"], 1.0))
    if o["progress"]:
        click.echo(dataset.describe(), err=True)
    settings = QEFPNSettings(
        edge=o["edge"], solver=None, solver_warmup_steps=o["solver_warmup_steps"],
        lr_backbone=o["lr_backbone"], lr_rest=o["lr_rest"], lr_warmup_steps=o["lr_warmup_steps"],
    )
    trainer = QEFPNTrainer(model, dataset, cli_options.loop_options(o), settings)
    trainer.config["cli"] = cli_options.options_to_save(o)
    return trainer.fit(o["resume"])
