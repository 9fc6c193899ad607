"""What a model kind provides to export, and the registry of kinds by name.

The export side of a kind (:class:`ExportKind`): the graphs a checkpoint of the kind is cut into,
the loop settings written into the manifest, which graphs the precisions reduce, what the
precision gate compares beyond the saliency maps, and the loop the Triton repository runs
(``salkit/export/triton/loop_<kind>.py``, copied next to the Triton loop model: numpy and
``salkit.kernels`` only). The runtime side is ``salkit.runtime.kinds`` (docs/architecture.md,
"Model kinds"). Adding a kind to export is one module here, registered with
:func:`register_export_kind` and imported by the package's ``__init__``, plus its Triton loop
(``salkit/export/triton/loop_<kind>.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.export.graphs import GraphDef
from salkit.runtime.bundle import Manifest

Outputs = dict[str, np.ndarray]


class ExportKind:
    """One model kind as export sees it. Methods marked "every kind" have no default."""

    name: str = ""
    size_fixed_by: str = "its graphs"  # what in the checkpoint fixes the input side (named when --size differs)
    reduced_graphs: tuple[str, ...] = ()  # graphs a forced precision (fp16, int8) reduces
    candidate_graphs: tuple[str, ...] = ()  # graphs the automatic choice tries in int8
    triton_loop: str = ""  # file of salkit.export.triton the Triton loop model runs, e.g. "loop_coop.py"
    split_energy: bool = False  # graph_defs takes split_energy=True (--split-energy: an energy gradient to split)

    def graph_defs(self, model: Any, size: int, data: Any) -> list[GraphDef]:
        """The bundle's graphs of a checkpoint's model (``data``: real images to check on, or None). Every kind."""
        raise NotImplementedError

    def store_settings(self, manifest: Manifest, model: Any, train_config: dict[str, Any]) -> None:
        """Write the kind's loop settings into the manifest. Every kind."""
        raise NotImplementedError

    def auto_graphs(self, manifest: Manifest) -> tuple[str, ...]:
        """The candidate graphs the gate can judge in this bundle: those its default predict runs."""
        return self.candidate_graphs

    def rows(self, manifest: Manifest, graph: str) -> int:
        """Rows ``graph`` runs on per image in the runtime's loop (what its speed is timed at)."""
        return 1

    def gate_tolerance(self, manifest: Manifest) -> float:
        """The bundle's own tolerance the gate allows (0: none)."""
        return 0.0

    def gate_metrics(self, reference: Outputs, candidate: Outputs, tolerance: float) -> dict[str, float]:
        """The gate's numbers beyond saliency for one candidate predict against the reference
        (keys salkit.export.precision.gate.failures knows: entropy_mean_abs, residual + residual_limit)."""
        return {}

    def triton_settings(self, manifest: Manifest) -> dict[str, Any]:
        """What the Triton loop needs beyond the model config's settings (graph wiring)."""
        return {}

    def energy_steps(self, manifest: Manifest) -> int:
        """The energy descent's step count per predict the bundle keeps (0: the kind has no energy)."""
        return 0

    def set_energy_steps(self, manifest: Manifest, steps: int) -> None:
        """Keep ``steps`` as the bundle's energy step count (the energy-steps gate's choice). Kinds with an energy."""
        raise NotImplementedError(f"{self.name} has no energy steps")

    def set_refine_steps(self, manifest: Manifest, steps: int) -> None:
        """Keep ``steps`` as ``refine``'s default step count (judged on other models' maps). Kinds that refine."""
        raise NotImplementedError(f"{self.name} does not refine")


EXPORT_KINDS: dict[str, ExportKind] = {}


def register_export_kind(kind: ExportKind) -> ExportKind:
    if not kind.name or kind.name in EXPORT_KINDS:
        raise ValueError(f"model kind {kind.name!r} is empty or registered twice")
    EXPORT_KINDS[kind.name] = kind
    return kind


def get_export_kind(name: str) -> ExportKind:
    """The kind registered as ``name``; a SalkitError naming the known ones otherwise."""
    if name not in EXPORT_KINDS:
        raise SalkitError(f"export knows no model kind {name!r} (expected one of {sorted(EXPORT_KINDS)})")
    return EXPORT_KINDS[name]
