"""`train-coop`: train the cooperative saliency model (Algorithm 1) on a DUTS-layout dataset.

Presets set the model and the training defaults; explicit options override them, and options
left out keep the preset's value (or, with ``--resume``, the value the checkpoint was trained
with). Multi-process: ``torchrun --nproc-per-node N $(which train-coop) …``.
``--scribble`` trains from ``scribble/`` instead of ``gt/`` (Algorithm 2, docs/weak-supervision.md).
``--split train`` reads only the ids of ``DATA/train.txt`` (PASCAL-S's layout, docs/data-and-eval.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.train.engine import cli_options

# Training defaults per preset over the shared RUN_DEFAULTS (salkit.train.engine.cli_options); the model
# presets, image size included, live in salkit.train.coop.model.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's Algorithm 1 settings (§5): K = 5, δ_U = 0.4, δ_G = 0.1, lr_G 5e-5, lr_U 1e-3, ×0.9 / 20 epochs.
    "paper": {"epochs": 30, "batch_size": 10, "lr_gen": 5e-5, "lr_energy": 1e-3},
    # CPU demos and tests: a larger generator learning rate so a few epochs learn something.
    # energy_reg: with the paper's unregularised θ loss the energy gap grew without bound on the
    # synthetic set (1e5 by step 75) and one seed collapsed after descent; see docs/coop.md.
    # ce_decay False: with λ decaying to 0 the generator drifted after the revised maps of a still
    # poor energy (demo set, 2 epochs: MAE 0.197 / S 0.438 with the decay, 0.141 / 0.692 without).
    "tiny": {"epochs": 10, "batch_size": 8, "lr_gen": 1e-3, "lr_energy": 1e-3, "energy_reg": 0.01,
             "ce_decay": False},
    # Real photographs from an ImageNet backbone (experiments/real_trials.py): the decoder learns at lr_gen,
    # the pretrained trunk at lr_gen · lr_backbone_scale; the energy settings are tiny's.
    "lite": {"epochs": 1, "batch_size": 8, "lr_gen": 5e-4, "lr_backbone_scale": 0.2, "lr_energy": 1e-3,
             "energy_reg": 0.01, "ce_decay": False},
}
SETTING_KEYS = ("langevin_steps", "energy_step", "latent_step", "sigma", "lr_gen", "lr_backbone_scale", "lr_energy", "lr_decay",
                "lr_decay_every", "lr_schedule", "ce_weight", "energy_reg", "generator_only", "ce_decay", "langevin_noise", "energy_descent",
                "energy_corrupt", "energy_only", "descent_starts", "descent_samples", "descent_iou", "iou_weight", "smoothness_weight",
                "coherence_weight")


@click.command(name="train-coop", epilog=cli_options.presets_epilog(TRAIN_PRESETS),
               context_settings={"help_option_names": ["-h", "--help"]})
@cli_options.train_options(TRAIN_PRESETS)
@click.option("--scribble", is_flag=True, default=None,
              help="Learn from scribbles (DATA/scribble/) while recovering the missing labels (Algorithm 2); gt/, "
                   "if present, only measures the recovery.")
@click.option("--ce-decay/--ce-constant", "ce_decay", default=None,
              help="λ decays to 0 as in Algorithm 1, or stays at --ce-weight [decay; with --scribble: constant].")
@click.option("--generator-only", type=click.Choice(["deterministic", "latent"]), default=None,
              help="Ablation baselines: train only the generator — deterministic G(X) (h = 0, BCE) or the "
                   "latent-variable G(X,h) alone (h inferred from the ground truth); the energy stays untrained.")
@click.option("--dump-recovered", type=int, default=None,
              help="With --scribble: steps between PNGs of image | scribble | recovered label (| gt); 0 = never [0].")
@click.option("--latent-dim", type=int, default=None, help="d, the latent size [8].")
@click.option("--energy-width", type=float, default=None, help="EBM width factor (1 = 32-64-128-256).")
@click.option("--langevin-steps", type=int, default=None, help="K, steps of both Langevin chains [5].")
@click.option("--energy-step", type=float, default=None, help="δ_U, Langevin step on Y [0.4].")
@click.option("--latent-step", type=float, default=None, help="δ_G, Langevin step on h [0.1].")
@click.option("--sigma", type=float, default=None, help="σ, generator observation noise [0.3].")
@click.option("--langevin-noise/--no-langevin-noise", "langevin_noise", default=None,
              help="Noise in both Langevin chains (Eq. 2 and 7); the authors' code drops it for the last third of "
                   "training [noise].")
@click.option("--lr-gen", type=float, default=None)
@click.option("--lr-backbone-scale", type=float, default=None,
              help="The backbone's learning rate as a fraction of --lr-gen [1; lite: 0.2].")
@click.option("--lr-energy", type=float, default=None)
@click.option("--lr-decay", type=float, default=None, help="Learning-rate factor per decay [0.9].")
@click.option("--lr-decay-every", type=int, default=None, help="Epochs between decays [20].")
@click.option("--lr-schedule", type=click.Choice(["step", "linear"]), default=None,
              help="'step': × --lr-decay every --lr-decay-every epochs; 'linear': per step from the base rates "
                   "down to 0 at the last step [step].")
@click.option("--ce-weight", type=float, default=None, help="λ at the start, decaying linearly to 0 [1.0].")
@click.option("--energy-reg", type=float, default=None, help="α of an α·mean(U²) energy regulariser; 0 = paper [0].")
@click.option("--energy-descent", type=float, default=None,
              help="β of the BCE of U's unrolled K-step descent from Ŷ added to the θ loss; 0 = paper [0].")
@click.option("--energy-corrupt/--no-energy-corrupt", "energy_corrupt", default=None,
              help="Degraded ground truths as extra negatives of the θ loss (and descent starts) [no].")
@click.option("--energy-only", is_flag=True, default=None,
              help="Fine-tune the energy alone to refine maps (generator frozen; needs --init or --resume): "
                   "U learns from the BCE of its K-step descent vs the truth (docs/coop.md).")
@click.option("--descent-starts", default=None,
              help="With --energy-only: start maps of the descent, a comma-separated subset of "
                   "generator,degraded,restyled [all three].")
@click.option("--descent-samples", type=int, default=None,
              help="With --energy-only: generator samples averaged into Ŷ [4].")
@click.option("--iou-weight", type=float, default=None,
              help="Weight of a soft-IoU term beside the generator's BCE against full masks; 0 = paper [0].")
@click.option("--smoothness-weight", type=float, default=None,
              help="With --scribble: weight of an edge-aware smoothness term on the generator's map (not in the "
                   "paper; the scribble CE reaches only the labelled pixels); 0 = off [0].")
@click.option("--coherence-weight", type=float, default=None,
              help="With --scribble: weight of a local coherence term (near pixels alike in colour agree; not in the "
                   "paper) on the generator's map; 0 = off [0].")
@click.option("--descent-iou", type=float, default=None,
              help="Weight of a soft-IoU term beside the descent's BCE (--energy-only, --energy-descent) [0].")
@report_user_errors
def main(**opts: Any) -> None:
    """Train the cooperative saliency model (generator + energy) with Algorithm 1."""
    run(opts)


def _validate(o: dict[str, Any]) -> None:
    cli_options.check(o)
    for key in ("langevin_steps", "latent_dim", "lr_decay_every", "energy_width", "energy_step", "latent_step", "sigma", "lr_gen",
                "lr_backbone_scale", "lr_energy", "lr_decay"):
        cli_options.positive(key, o.get(key))
    cli_options.positive("ce_weight", o.get("ce_weight"), allow_zero=True)
    cli_options.positive("energy_reg", o.get("energy_reg"), allow_zero=True)
    cli_options.positive("dump_recovered", o.get("dump_recovered"), allow_zero=True)
    if o.get("dump_recovered") and not o.get("scribble"):
        raise SalkitError("--dump-recovered needs --scribble (there is nothing to recover under full supervision)")
    cli_options.positive("smoothness_weight", o.get("smoothness_weight"), allow_zero=True)
    if o.get("smoothness_weight") and not o.get("scribble"):
        raise SalkitError("--smoothness-weight is for --scribble (full masks label every pixel already)")
    cli_options.positive("coherence_weight", o.get("coherence_weight"), allow_zero=True)
    if o.get("coherence_weight") and not o.get("scribble"):
        raise SalkitError("--coherence-weight is for --scribble (full masks label every pixel already)")
    if o.get("generator_only") and o.get("scribble"):
        raise SalkitError("--generator-only trains from full masks; it cannot be combined with --scribble")
    cli_options.positive("energy_descent", o.get("energy_descent"), allow_zero=True)
    cli_options.positive("descent_samples", o.get("descent_samples"))
    cli_options.positive("descent_iou", o.get("descent_iou"), allow_zero=True)
    cli_options.positive("iou_weight", o.get("iou_weight"), allow_zero=True)
    if o.get("energy_only"):
        if o.get("init") is None and o.get("resume") is None:
            raise SalkitError("--energy-only fine-tunes a trained energy: pass --init CKPT (or --resume an energy-only run)")
        if o.get("scribble") or o.get("generator_only"):
            raise SalkitError("--energy-only cannot be combined with --scribble or --generator-only")
    if o.get("descent_starts") is not None:
        from salkit.train.coop.energy_only import parse_starts

        parse_starts(o["descent_starts"])


def run(opts: dict[str, Any]) -> Any:
    """Train with resolved CLI options; returns the finished trainer (its model, step, out)."""
    import torch

    from salkit.train.coop.baselines import GeneratorOnlyTrainer
    from salkit.train.coop.scribble import ScribbleOptions, ScribbleTrainer
    from salkit.train.coop.trainer import CoopSettings, CoopTrainer
    from salkit.train.data.dataset import SaliencyDataset
    from salkit.train.engine.registry import create_model

    o, ckpt = cli_options.resolve_run(opts, TRAIN_PRESETS, "coop")
    _validate(o)
    if o.get("threads"):
        torch.set_num_threads(o["threads"])
    torch.manual_seed(o["seed"])
    from salkit.train.coop.model import PRESETS

    # A resumed or --init run takes every weight from its checkpoint; a new one starts its backbone as told.
    weights = None if ckpt or o.get("init") else cli_options.resolve_backbone_weights(
        o.get("backbone_weights"), o.get("backbone") or PRESETS[o["preset"]]["backbone"])
    model = create_model(
        "coop", preset=o["preset"], image_size=o.get("size"), backbone=o.get("backbone"), latent_dim=o.get("latent_dim"),
        energy_width=o.get("energy_width"), backbone_weights=weights,
    )
    o["size"] = model.image_size  # saved for a resume, as given or as the model preset chose
    if o.get("init") is not None and ckpt is None:
        _load_init_weights(model, o["init"])
    scribble = ScribbleOptions(dump_recovered=o.get("dump_recovered") or 0,
                               ce_decay=bool(o.get("ce_decay"))) if o.get("scribble") else None
    dataset = SaliencyDataset(Path(o["data"]), o["size"], labels="scribble" if scribble else "mask", split=o.get("split"),
                              augment=True, scale=(o["crop"], 1.0))
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(dataset.describe(), err=True)
    # ce_decay is read from ScribbleOptions in scribble mode (its default there is constant λ).
    settings = CoopSettings(**{k: o[k] for k in SETTING_KEYS if o.get(k) is not None})
    loop = cli_options.loop_options(o)
    if scribble is not None:
        trainer: CoopTrainer = ScribbleTrainer(model, dataset, loop, settings, scribble)
    elif settings.energy_only:
        from salkit.train.coop.energy_only import EnergyOnlyTrainer

        trainer = EnergyOnlyTrainer(model, dataset, loop, settings)
    elif settings.generator_only is not None:
        trainer = GeneratorOnlyTrainer(model, dataset, loop, settings)
    else:
        trainer = CoopTrainer(model, dataset, loop, settings)
    trainer.config["cli"] = cli_options.options_to_save(o)
    try:
        path = trainer.fit(resume=o["resume"])
    finally:
        trainer.dist.close()
    if trainer.dist.is_main:
        click.echo(f"trained {trainer.step} steps; checkpoint {path}")
    return trainer


def _load_init_weights(model: Any, path: Path) -> None:
    import torch

    from salkit.train.engine.checkpoint import load_init_weights

    init = load_init_weights(model, path, "coop")
    if (init.get("train_config", {}).get("coop") or {}).get("generator_only") == "deterministic":
        # G(X) trained with h = 0 throughout: its weights on h are their random initial values, and
        # h ~ N(0, I) through them would throw the trained decoder off (CE 38 at the first steps of an
        # earlier warm start). Zeroed, G(X, h) starts as G(X) for every h and learns its use of h.
        with torch.no_grad():
            model.generator.latent_conv.weight[:, -model.generator.latent_dim:].zero_()
