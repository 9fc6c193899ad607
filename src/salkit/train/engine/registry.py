"""Model registry: models are created by name, with options left ``None`` keeping their defaults.

A model module registers a factory with ``@register_model(name, kind=...)``. The factory takes
keyword options and returns an ``nn.Module`` carrying ``.config`` — the complete, resolved,
JSON-serialisable keyword set that rebuilds the same architecture via
``create_model(name, **module.config)``. Checkpoints store the name, kind and that config.

Model modules are imported lazily (on the first registry lookup) from ``MODEL_MODULES``;
adding a model family is one line there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from salkit.base.errors import SalkitError

MODEL_MODULES: list[str] = [
    "salkit.train.coop.model",
    "salkit.train.qefpn.model",
]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    factory: Callable[..., Any]


_REGISTRY: dict[str, ModelEntry] = {}
_imported = False


def register_model(name: str, *, kind: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``factory(**options) -> nn.Module`` under ``name``."""

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name=name, kind=kind or name, factory=factory)
        return factory

    return decorate


def _import_model_modules() -> None:
    global _imported
    if _imported:
        return
    for module in MODEL_MODULES:
        importlib.import_module(module)
    _imported = True


def list_models() -> list[str]:
    _import_model_modules()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _import_model_modules()
    if name not in _REGISTRY:
        raise SalkitError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> Any:
    """Build model ``name``; overrides that are ``None`` are dropped so the model default applies."""
    entry = get_entry(name)
    options = {key: value for key, value in overrides.items() if value is not None}
    model = entry.factory(**options)
    if not hasattr(model, "config"):
        raise TypeError(f"model factory {name!r} must return a module with a .config dict")
    return model
