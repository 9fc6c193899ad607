"""The cooperative kind's export side: encoder / latent_decoder / generator / energy / energy_grad
graphs (:mod:`salkit.export.graphs_coop`), the ``coop`` manifest block, and the entropy maps the
precision gate compares."""

from __future__ import annotations

from typing import Any

import numpy as np

from salkit.export.graphs import GraphDef
from salkit.export.kinds.base import ExportKind, Outputs, register_export_kind
from salkit.runtime.bundle import Manifest

ENTROPY_KEYS = ("predictive", "aleatoric", "epistemic")
SAMPLE_GRAPHS = ("latent_decoder",)  # the graphs the loop runs on the N latent samples of each image at once


class CoopExport(ExportKind):
    name = "coop"
    size_fixed_by = "its energy net"  # the energy net's fully connected layer fixes the side
    # The generator (the authors' whole path, N encoder passes) stays float32: the gate judges
    # the split path the runtime runs, so a reduced generator would go unjudged.
    reduced_graphs = ("encoder", "latent_decoder")
    candidate_graphs = ("encoder", "latent_decoder", "energy_grad")
    triton_loop = "loop_coop.py"
    split_energy = True  # energy_image + energy_grad_step on request (graphs_coop)

    def graph_defs(self, model: Any, size: int, data: Any, split_energy: bool = False) -> list[GraphDef]:
        from salkit.export import graphs_coop

        return graphs_coop.coop_graphs(model, size, data, split_energy=split_energy)

    def store_settings(self, manifest: Manifest, model: Any, train_config: dict[str, Any]) -> None:
        from salkit.export import graphs_coop

        manifest.coop = graphs_coop.coop_settings(model, train_config)

    def auto_graphs(self, manifest: Manifest) -> tuple[str, ...]:
        # With K = 0 (the step gate kept no step) the predict the precision gate judges never runs the
        # energy gradient: a reduced energy_grad would pass unjudged, so it stays float32.
        if self.energy_steps(manifest) == 0:
            return tuple(g for g in self.candidate_graphs if g != "energy_grad")
        return self.candidate_graphs

    def rows(self, manifest: Manifest, graph: str) -> int:
        # The loop decodes N samples at once; the encoder runs once per image, and the energy's steps revise
        # the mean of the samples, one map per image (salkit.runtime.loops: energy_grad on the batch's rows).
        return int(manifest.coop.get("samples", 1) or 1) if graph in SAMPLE_GRAPHS else 1

    def gate_metrics(self, reference: Outputs, candidate: Outputs, tolerance: float) -> dict[str, float]:
        per_map = [float(np.abs(candidate[k].astype(np.float64) - reference[k]).mean()) for k in ENTROPY_KEYS if k in reference]
        return {"entropy_mean_abs": max(per_map, default=0.0)}

    def energy_steps(self, manifest: Manifest) -> int:
        return int(manifest.coop.get("langevin_steps", 0))

    def set_energy_steps(self, manifest: Manifest, steps: int) -> None:
        manifest.coop["langevin_steps"] = int(steps)

    def set_refine_steps(self, manifest: Manifest, steps: int) -> None:
        manifest.coop["refine_steps"] = int(steps)

    def triton_settings(self, manifest: Manifest) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if "logit_eps" in manifest.coop:  # the runtime's default (kernels.coop.LOGIT_EPS) otherwise
            settings["logit_eps"] = manifest.coop["logit_eps"]
        settings["feature_names"] = [t.name for t in manifest.graphs["encoder"].outputs]
        # The artefacts the repository carries are the recorded choice's (salkit.export.triton_repo):
        # the loop splits the energy gradient exactly when sal-runtime's plan at that precision does.
        from salkit.runtime.kinds.coop import splits_energy

        chosen = manifest.chosen_plan()
        settings["split_energy"] = splits_energy(manifest, chosen[1] if chosen else manifest.precision)
        return settings


register_export_kind(CoopExport())
