"""The QE-FPN kind's export side: encoder / f / decoder graphs (:mod:`salkit.export.graphs_qefpn`),
the ``qefpn`` manifest block, and the gate's convergence check."""

from __future__ import annotations

from typing import Any

import numpy as np

from salkit.export.graphs import GraphDef
from salkit.export.kinds.base import ExportKind, Outputs, register_export_kind
from salkit.runtime.bundle import Manifest

# A quantised f re-applies its error every iteration: the solve must converge about as well as in
# float32, its final residual at most this factor times float32's (or the bundle's tolerance).
RESIDUAL_FACTOR = 2.0


class QEFPNExport(ExportKind):
    name = "qefpn"
    size_fixed_by = "its equilibrium state"  # the state size D fixes the side
    reduced_graphs = ("encoder", "decoder")
    candidate_graphs = ("encoder", "decoder", "f")
    triton_loop = "loop_qefpn.py"

    def graph_defs(self, model: Any, size: int, data: Any) -> list[GraphDef]:
        from salkit.export import graphs_qefpn

        return graphs_qefpn.qefpn_graphs(model, size, data)

    def store_settings(self, manifest: Manifest, model: Any, train_config: dict[str, Any]) -> None:
        from salkit.export import graphs_qefpn

        manifest.qefpn = graphs_qefpn.qefpn_settings(model, train_config)

    def gate_tolerance(self, manifest: Manifest) -> float:
        return float(manifest.qefpn.get("broyden_tol", 0.0) or 0.0)

    def gate_metrics(self, reference: Outputs, candidate: Outputs, tolerance: float) -> dict[str, float]:
        residual, residual_fp32 = float(np.max(candidate["residual"])), float(np.max(reference["residual"]))
        return {"residual": residual, "residual_fp32": residual_fp32,
                "residual_limit": max(RESIDUAL_FACTOR * residual_fp32, tolerance)}


register_export_kind(QEFPNExport())
