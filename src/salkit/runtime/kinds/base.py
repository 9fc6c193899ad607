"""What a model kind provides to the runtime, and the registry of kinds by name.

A *kind* (``Manifest.model_kind``: ``coop``, ``qefpn``) is a family of models that share a bundle
layout and an inference loop. Everything the runtime does differently per kind sits behind
:class:`RuntimeKind`: the graphs a bundle of the kind must hold, its default samples and steps,
building its loop from the bundle's runners, predict / refine over that loop, the models the
server exposes for it, its loop settings in the model config, and what ``bench`` times and counts.
Callers ask ``kind_of(manifest)`` (or ``get_kind(name)``) and never compare kind names.

Adding a kind to the runtime is one module in this folder: a subclass of RuntimeKind registered
with :func:`register_kind` and imported by the package's ``__init__``. Its export side (graphs and
manifest settings) is ``salkit.export.kinds``; docs/architecture.md, "Model kinds", lists the rest.

A kind cannot name server classes or the Predictor here (both import this package), so it names
its served models (``salkit.runtime.server.models.SERVED_MODELS``) and receives the predictor.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.backends.base import Device, Runner
from salkit.runtime.bundle import MANIFEST_NAME, Manifest

RunnerOf = Callable[[str], Runner]  # graph name → its loaded runner (the predictor's, made on first use)


@dataclasses.dataclass(frozen=True)
class GraphRuns:
    """How one predict runs a graph: ``calls`` times, each call on ``rows`` rows per image of the
    batch (the cooperative latent decoder runs once on N·B rows: rows = N)."""

    calls: int
    rows: int = 1


class RuntimeKind:
    """One model kind as the runtime sees it. Subclasses set the attributes and the methods
    marked "every kind"; the others have defaults that fit a kind without the feature."""

    name: str = ""
    graphs: tuple[str, ...] = ()  # graphs a bundle of this kind must hold
    served_models: tuple[str, ...] = ()  # names in SERVED_MODELS; the first takes /predict and is Triton's entry
    refines: bool = False  # has refine (an energy to descend from a given map)
    uncertainty: bool = False  # predict can return the entropy maps predictive / aleatoric / epistemic
    takes_samples: bool = False  # predict has a number of samples N (else the option is ignored)
    stats: tuple[str, ...] = ()  # per-image values predict returns beside the maps, e.g. ("iterations",)
    bench_paths: tuple[str, ...] = ("split",)  # predict paths bench times; "split" is the headline

    # -- bundle --------------------------------------------------------------------------------
    def settings(self, manifest: Manifest) -> dict[str, Any]:
        """The kind's loop settings in the manifest (kinds without a manifest field of their own
        keep them in ``extra[<name>]``)."""
        return dict(manifest.extra.get(self.name, {}))

    def config_settings(self, manifest: Manifest) -> dict[str, Any]:
        """The settings the model config reports (``salkit_settings``), JSON-ready."""
        return self.settings(manifest)

    # -- predict ---------------------------------------------------------------------------------
    def defaults(self, manifest: Manifest, samples: int | None, steps: int | None) -> tuple[int, int]:
        """(samples, steps) of a call: the given values checked, or the bundle's. Every kind."""
        raise NotImplementedError

    def refine_steps(self, manifest: Manifest, steps: int | None) -> int:
        """The steps of a ``refine`` call: the given value checked, or the bundle's. Kinds that refine."""
        return self.defaults(manifest, None, steps)[1]

    def build_loop(self, manifest: Manifest, runner: RunnerOf, device: Device, precision: str = "fp32") -> Any:
        """The kind's loop over the bundle's runners (holding its buffers per batch shape); ``precision``
        is the plan's, whose artefacts ``runner`` loads. Every kind."""
        raise NotImplementedError

    def predict(self, loop: Any, x: np.ndarray, chunks: list[slice], *, samples: int, steps: int, noise: bool,
                uncertainty: bool, seed: int | None, path: str, latents: np.ndarray | None,
                noise_values: np.ndarray | None, runner: RunnerOf) -> dict[str, np.ndarray]:
        """x (B,3,S,S) float32 normalised → "saliency" (B,1,S,S) and the kind's extras, run on
        the ``chunks`` of the batch (the bundle's maximum batch each). Every kind."""
        raise NotImplementedError

    def refine(self, loop: Any, x: np.ndarray, maps: np.ndarray, chunks: list[slice], *, steps: int,
               noise_values: np.ndarray | None) -> np.ndarray:
        """x (B,3,S,S), maps (B,1,S,S) probabilities → refined (B,1,S,S). Kinds that refine."""
        raise NotImplementedError(f"{self.name} has no refine")

    # -- bench -----------------------------------------------------------------------------------
    def latent_dim(self, manifest: Manifest) -> int:
        """Width d of the latents (N, B, d) bench hands to every implementation (1: none used)."""
        return 1

    def step_size(self, manifest: Manifest) -> float:
        """The loop's step size, for the bench baselines (0: none)."""
        return 0.0

    def graph_runs(self, samples: int, steps: int, loop: Any = None) -> dict[str, dict[str, GraphRuns]]:
        """Per bench path, the graphs one predict runs and how often (what ``bench.record.graph_flops_per_image`` counts and bench's
        breakdown of a predict into graph and host time multiplies); ``loop``: the loop that runs
        them, where the graphs depend on the bundle (None: the kind's default). Every kind."""
        raise NotImplementedError

    def bench_call(self, predictor: Any, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
        """The predict bench times (the same latents for every implementation). Every kind."""
        raise NotImplementedError

    def graph_calls(self, loop: Any, batch: int, samples: int) -> dict[str, Callable[[], None]]:
        """One bound run per graph of the split predict, on the buffers the predict built (one of the
        ``graph_runs(…)["split"][graph].calls`` calls of a predict). Every kind; {} if it binds none."""
        raise NotImplementedError


def join_chunks(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-chunk outputs → one dict, each array concatenated along the batch axis."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


KINDS: dict[str, RuntimeKind] = {}


def register_kind(kind: RuntimeKind) -> RuntimeKind:
    """Make ``kind`` known under ``kind.name`` (a second kind of one name is a bug)."""
    if not kind.name or kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is empty or registered twice")
    KINDS[kind.name] = kind
    return kind


def known_kinds() -> list[str]:
    return sorted(KINDS)


def get_kind(name: str, where: str = "") -> RuntimeKind:
    """The kind registered as ``name``; a SalkitError naming the known ones otherwise."""
    if name not in KINDS:
        prefix = f"{where}: " if where else ""
        raise SalkitError(f"{prefix}unknown model kind {name!r} (expected one of {known_kinds()})")
    return KINDS[name]


def kind_of(manifest: Manifest) -> RuntimeKind:
    """The manifest's kind, with the graphs it needs checked present."""
    where = str(manifest.root / MANIFEST_NAME) if manifest.root is not None else "manifest"
    kind = get_kind(manifest.model_kind, where)
    missing = [g for g in kind.graphs if g not in manifest.graphs]
    if missing:
        raise SalkitError(f"{where}: {kind.name} bundle lacks graphs {missing}")
    return kind
