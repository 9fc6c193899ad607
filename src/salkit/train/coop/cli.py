"""`train-coop`: train the cooperative saliency model (Algorithm 1) on a DUTS-layout dataset.

Presets set the model and the training defaults; explicit options override them, and options
left out keep the preset's value (or, with ``--resume``, the value the checkpoint was trained
with). Multi-process: ``torchrun --nproc-per-node N $(which train-coop) …``.
``--scribble`` trains from ``scribble/`` instead of ``gt/`` (Algorithm 2, docs/weak-supervision.md).
``--split train`` reads only the ids of ``DATA/train.txt`` (PASCAL-S's layout, docs/data-and-eval.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.train.engine.cli_options import backbone_options, resolve_backbone_weights

# Training defaults per preset (the model presets live in salkit.train.coop.model).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's Algorithm 1 settings (§5): K = 5, δ_U = 0.4, δ_G = 0.1, lr_G 5e-5, lr_U 1e-3, ×0.9 / 20 epochs.
    "paper": {"epochs": 30, "batch_size": 10, "size": 352, "lr_gen": 5e-5, "lr_energy": 1e-3},
    # CPU demos and tests: a larger generator learning rate so a few epochs learn something.
    # energy_reg: with the paper's unregularised θ loss the energy gap grew without bound on the
    # synthetic set (1e5 by step 75) and one seed collapsed after descent; see docs/coop.md.
    # ce_decay False: with λ decaying to 0 the generator drifted after the revised maps of a still
    # poor energy (demo set, 2 epochs: MAE 0.197 / S 0.438 with the decay, 0.141 / 0.692 without).
    "tiny": {"epochs": 10, "batch_size": 8, "size": 64, "lr_gen": 1e-3, "lr_energy": 1e-3, "energy_reg": 0.01,
             "ce_decay": False},
    # Real photographs from an ImageNet backbone (experiments/real_trials.py): the decoder learns at lr_gen,
    # the pretrained trunk at lr_gen · lr_backbone_scale; the energy settings are tiny's.
    "lite": {"epochs": 1, "batch_size": 8, "size": 256, "lr_gen": 5e-4, "lr_backbone_scale": 0.2, "lr_energy": 1e-3,
             "energy_reg": 0.01, "ce_decay": False},
}
SETTING_KEYS = ("langevin_steps", "energy_step", "latent_step", "sigma", "lr_gen", "lr_backbone_scale", "lr_energy", "lr_decay",
                "lr_decay_every", "lr_schedule", "ce_weight", "energy_reg", "generator_only", "ce_decay", "energy_descent",
                "energy_corrupt", "energy_only", "descent_starts", "descent_samples", "descent_iou", "iou_weight")


def _positive(name: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(float(value)) or value < 0 or (value == 0 and not allow_zero):
        raise SalkitError(f"--{name.replace('_', '-')} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@click.command(name="train-coop")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="DUTS-layout dataset (img/ + gt/; with --scribble img/ + scribble/).")
@click.option("--split", default=None,
              help="Train on the ids a split file lists: a name N for DATA/N.txt (PASCAL-S: train) or a file path "
                   "[every pair in DATA].")
@click.option("--crop", type=float, default=None,
              help="Augmentation: random crops covering this fraction (or more) of each side, besides the flip; "
                   "1 = flip only [1].")
@click.option("--scribble", is_flag=True, default=None,
              help="Learn from scribbles while recovering the missing labels (Algorithm 2); gt/, if present, "
                   "only measures the recovery.")
@click.option("--ce-decay/--ce-constant", "ce_decay", default=None,
              help="λ decays to 0 as in Algorithm 1, or stays at --ce-weight [decay; with --scribble: constant].")
@click.option("--generator-only", type=click.Choice(["deterministic", "latent"]), default=None,
              help="Ablation baselines: train only the generator — deterministic G(X) (h = 0, BCE) or the "
                   "latent-variable G(X,h) alone (h inferred from the ground truth); the energy stays untrained.")
@click.option("--dump-recovered", type=int, default=None,
              help="With --scribble: steps between PNGs of image | scribble | recovered label (| gt); 0 = never [0].")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Run folder: last.pt, log.csv, grids/.")
@click.option("--preset", type=click.Choice(sorted(TRAIN_PRESETS)), default=None, help="Model + training defaults [paper].")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--size", type=int, default=None, help="Training image size S (multiple of 32).")
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Checkpoint to continue from.")
@click.option("--init", "init", type=click.Path(path_type=Path), default=None,
              help="Start from this coop checkpoint's weights (same architecture; e.g. pre-trained on procedural "
                   "scenes), with fresh optimisers and schedule.")
@click.option("--seed", type=int, default=None, help="Seed for weights, data order and noise [0].")
@backbone_options
@click.option("--latent-dim", type=int, default=None, help="d, the latent size [8].")
@click.option("--energy-width", type=float, default=None, help="EBM width factor (1 = 32-64-128-256).")
@click.option("--langevin-steps", type=int, default=None, help="K, steps of both Langevin chains [5].")
@click.option("--energy-step", type=float, default=None, help="δ_U, Langevin step on Y [0.4].")
@click.option("--latent-step", type=float, default=None, help="δ_G, Langevin step on h [0.1].")
@click.option("--sigma", type=float, default=None, help="σ, generator observation noise [0.3].")
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
@click.option("--descent-iou", type=float, default=None,
              help="Weight of a soft-IoU term beside the descent's BCE (--energy-only, --energy-descent) [0].")
@click.option("--checkpoint-every", type=int, default=None, help="Steps between checkpoints [50].")
@click.option("--grid-every", type=int, default=None, help="Steps between PNG grids; 0 = never [100].")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in total.")
@click.option("--threads", type=int, default=None, help="torch CPU threads per process.")
@click.option("--progress/--no-progress", default=True)
@click.option("--force", is_flag=True, default=None, help="Start over in an OUT that already holds a run.")
@report_user_errors
def main(**opts: Any) -> None:
    """Train the cooperative saliency model (generator + energy) with Algorithm 1."""
    out, force = Path(opts["out"]), opts.pop("force")
    if (out / "last.pt").exists() and opts["resume"] is None and not force:
        raise SalkitError(f"{out} already holds a run (last.pt); pass --resume {out / 'last.pt'} or --force")
    run(opts)


def _resolve(opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    from salkit.train.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(opts["resume"], expect_kind="coop") if opts["resume"] is not None else None
    saved = dict(ckpt["train_config"].get("cli", {})) if ckpt is not None else {}
    preset = opts["preset"] or saved.get("preset") or "paper"
    resolved = {**TRAIN_PRESETS[preset], **saved, **{k: v for k, v in opts.items() if v is not None}}
    resolved["preset"] = preset
    resolved["resume"] = opts["resume"]
    resolved.setdefault("seed", 0)
    return resolved, ckpt


def _validate(o: dict[str, Any]) -> None:
    for key in ("epochs", "batch_size", "size", "langevin_steps", "latent_dim", "checkpoint_every", "lr_decay_every",
                "max_steps", "threads", "energy_width", "energy_step", "latent_step", "sigma", "lr_gen", "lr_backbone_scale", "lr_energy",
                "lr_decay"):
        _positive(key, o.get(key))
    _positive("ce_weight", o.get("ce_weight"), allow_zero=True)
    if o.get("crop") is not None and not 0 < o["crop"] <= 1:
        raise SalkitError(f"--crop must lie in (0, 1], got {o['crop']}")
    _positive("energy_reg", o.get("energy_reg"), allow_zero=True)
    _positive("grid_every", o.get("grid_every"), allow_zero=True)
    _positive("dump_recovered", o.get("dump_recovered"), allow_zero=True)
    if o.get("dump_recovered") and not o.get("scribble"):
        raise SalkitError("--dump-recovered needs --scribble (there is nothing to recover under full supervision)")
    if o.get("generator_only") and o.get("scribble"):
        raise SalkitError("--generator-only trains from full masks; it cannot be combined with --scribble")
    if o["size"] % 32 != 0:
        raise SalkitError(f"--size must be a multiple of 32, got {o['size']}")
    _positive("energy_descent", o.get("energy_descent"), allow_zero=True)
    _positive("descent_samples", o.get("descent_samples"))
    _positive("descent_iou", o.get("descent_iou"), allow_zero=True)
    _positive("iou_weight", o.get("iou_weight"), allow_zero=True)
    if o.get("energy_only"):
        if o.get("init") is None and o.get("resume") is None:
            raise SalkitError("--energy-only fine-tunes a trained energy: pass --init CKPT (or --resume an energy-only run)")
        if o.get("scribble") or o.get("generator_only"):
            raise SalkitError("--energy-only cannot be combined with --scribble or --generator-only")
    if o.get("descent_starts") is not None:
        from salkit.train.coop.energy_only import parse_starts

        parse_starts(o["descent_starts"])
    if o.get("init") is not None and o.get("resume") is not None:
        raise SalkitError("--init starts a new run from weights; --resume continues one: pass one of them")


def run(opts: dict[str, Any]) -> Any:
    """Train with resolved CLI options; returns the finished trainer (its model, step, out)."""
    import torch

    from salkit.train.coop.baselines import GeneratorOnlyTrainer
    from salkit.train.coop.scribble import ScribbleOptions, ScribbleTrainer
    from salkit.train.coop.trainer import CoopSettings, CoopTrainer
    from salkit.train.data.dataset import SaliencyDataset
    from salkit.train.engine.registry import create_model
    from salkit.train.engine.trainer import LoopOptions

    o, ckpt = _resolve(opts)
    _validate(o)
    if o.get("threads"):
        torch.set_num_threads(o["threads"])
    data = Path(o["data"])
    if not data.is_dir():
        raise SalkitError(f"--data {data} does not exist or is not a directory")
    scribble = ScribbleOptions(dump_recovered=o.get("dump_recovered") or 0,
                               ce_decay=bool(o.get("ce_decay"))) if o.get("scribble") else None
    crop = float(o.get("crop") or 1.0)
    dataset = SaliencyDataset(data, o["size"], labels="scribble" if scribble else "mask", split=o.get("split"),
                              augment=True, scale=(crop, 1.0))
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(dataset.describe(), err=True)
    torch.manual_seed(o["seed"])
    from salkit.train.coop.model import PRESETS

    # A resumed or --init run takes every weight from its checkpoint; a new one starts its backbone as told.
    weights = None if ckpt or o.get("init") else resolve_backbone_weights(
        o.get("backbone_weights"), o.get("backbone") or PRESETS[o["preset"]]["backbone"])
    model = create_model(
        "coop", preset=o["preset"], image_size=o["size"], backbone=o.get("backbone"), latent_dim=o.get("latent_dim"),
        energy_width=o.get("energy_width"), backbone_weights=weights,
    )
    if o.get("init") is not None and ckpt is None:
        _load_init_weights(model, o["init"])
    # ce_decay is read from ScribbleOptions in scribble mode (its default there is constant λ).
    settings = CoopSettings(**{k: o[k] for k in SETTING_KEYS if o.get(k) is not None})
    loop = LoopOptions(out=str(o["out"]), epochs=o["epochs"], batch_size=o["batch_size"], seed=o["seed"],
                       progress=o["progress"], max_steps=o.get("max_steps"),
                       **{k: o[k] for k in ("checkpoint_every", "grid_every") if o.get(k) is not None})
    if scribble is not None:
        trainer: CoopTrainer = ScribbleTrainer(model, dataset, loop, settings, scribble)
    elif settings.energy_only:
        from salkit.train.coop.energy_only import EnergyOnlyTrainer

        trainer = EnergyOnlyTrainer(model, dataset, loop, settings)
    elif settings.generator_only is not None:
        trainer = GeneratorOnlyTrainer(model, dataset, loop, settings)
    else:
        trainer = CoopTrainer(model, dataset, loop, settings)
    # Saved so that a resume without options continues with the same ones (paths as strings).
    trainer.config["cli"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in o.items()
                             if k not in ("resume", "progress", "max_steps", "threads", "out", "data", "init")}
    try:
        path = trainer.fit(resume=o["resume"])
    finally:
        trainer.dist.close()
    if trainer.dist.is_main:
        click.echo(f"trained {trainer.step} steps; checkpoint {path}")
    return trainer


def _load_init_weights(model: Any, path: Path) -> None:
    import torch

    from salkit.train.engine.checkpoint import load_checkpoint

    init = load_checkpoint(path, expect_kind="coop")
    if dict(init["model"]["config"]) != dict(model.config):
        raise SalkitError(f"--init {path} holds a coop model of another architecture ({init['model']['config']}); "
                          f"this run builds {model.config}")
    model.load_state_dict(init["state_dict"])
    if (init.get("train_config", {}).get("coop") or {}).get("generator_only") == "deterministic":
        # G(X) trained with h = 0 throughout: its weights on h are their random initial values, and
        # h ~ N(0, I) through them would throw the trained decoder off (CE 38 at the first steps of an
        # earlier warm start). Zeroed, G(X, h) starts as G(X) for every h and learns its use of h.
        with torch.no_grad():
            model.generator.latent_conv.weight[:, -model.generator.latent_dim:].zero_()
