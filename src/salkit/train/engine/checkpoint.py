"""Checkpoints: one ``.pt`` file, written atomically, enough to rebuild the model or resume exactly.

Layout (docs/architecture.md)::

    {"format": "salkit-checkpoint", "format_version": 1,
     "model": {"kind", "name", "config"}, "state_dict", "optimizers", "schedulers",
     "step", "epoch", "rng", "train_config", "versions": {"salkit", "torch"}}

``epoch``/``step`` name the position of the *next* batch to train (``step`` counts optimiser
steps since the start; ``batch_in_epoch`` under ``train_config["loop"]`` says where in the
epoch). ``load_checkpoint`` refuses missing, truncated, foreign and wrong-version files, and
files of the wrong model kind when one is expected, with a ``SalkitError`` naming the path.
"""

from __future__ import annotations

import random
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salkit.base.atomic import atomic_path
from salkit.base.errors import SalkitError

FORMAT = "salkit-checkpoint"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    try:
        salkit_version = metadata.version("salkit")
    except metadata.PackageNotFoundError:
        salkit_version = "unknown"
    return {"salkit": salkit_version, "torch": torch.__version__}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    model: torch.nn.Module,
    *,
    name: str,
    kind: str,
    optimizers: dict[str, Any] | None = None,
    schedulers: dict[str, Any] | None = None,
    step: int = 0,
    epoch: int = 0,
    train_config: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"kind": kind, "name": name, "config": dict(model.config)},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizers": {k: o.state_dict() for k, o in (optimizers or {}).items()},
        "schedulers": {k: s.state_dict() for k, s in (schedulers or {}).items()},
        "step": step,
        "epoch": epoch,
        "rng": rng if rng is not None else rng_state(),
        "train_config": dict(train_config or {}),
        "versions": versions(),
    }


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    """Write atomically: a reader (or a ``kill -9``) sees the previous file or the new one."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, *, expect_kind: str | None = None) -> dict[str, Any]:
    file = Path(path)
    if not file.exists():
        raise SalkitError(f"checkpoint {file} does not exist")
    if not file.is_file():
        raise SalkitError(f"checkpoint {file} is not a file")
    try:
        # Our own format holds numpy RNG state and plain python objects: not weights-only.
        ckpt = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:
        raise SalkitError(f"checkpoint {file} is unreadable or truncated ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SalkitError(f"{file} is not a salkit checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise SalkitError(
            f"checkpoint {file} has format version {ckpt.get('format_version')!r}; "
            f"this salkit reads version {FORMAT_VERSION}"
        )
    for key in ("model", "state_dict", "step", "epoch"):
        if key not in ckpt:
            raise SalkitError(f"checkpoint {file} lacks {key!r}")
    kind = ckpt["model"].get("kind")
    if expect_kind is not None and kind != expect_kind:
        raise SalkitError(f"checkpoint {file} holds a {kind!r} model, expected {expect_kind!r}")
    return ckpt


def build_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the checkpoint's module (by registry name and resolved config) with its weights."""
    from salkit.train.engine.registry import create_model

    model_info = ckpt["model"]
    model = create_model(model_info["name"], **model_info["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise SalkitError(f"checkpoint weights do not fit model {model_info['name']!r}: {err}") from None
    return model


def load_init_weights(model: torch.nn.Module, path: str | Path, kind: str) -> dict[str, Any]:
    """A trainer's ``--init``: ``model`` takes the weights of checkpoint ``path`` (a ``kind`` model of the same
    architecture), and nothing else of it (optimisers, schedule and step start afresh). Returns the checkpoint."""
    init = load_checkpoint(path, expect_kind=kind)
    config = getattr(model, "config", None)
    if dict(init["model"]["config"]) != dict(config or {}):
        raise SalkitError(f"--init {path} holds a {kind} model of another architecture ({init['model']['config']}); "
                          f"this run builds {config}")
    model.load_state_dict(init["state_dict"])
    return init
