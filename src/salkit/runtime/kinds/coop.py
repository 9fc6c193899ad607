"""The cooperative kind (LVM generator + energy model): encoder / latent_decoder / energy_grad
graphs, the Langevin loop of :mod:`salkit.runtime.loops`, predict with uncertainty, and refine.

Bundles exported with ``--split-energy`` also hold ``energy_image`` (image → image_term, X's share
of U's first convolution, constant over the K Langevin steps) and ``energy_grad_step`` ((saliency,
image_term) → grad); :func:`splits_energy` says when the loop runs those instead of ``energy_grad``.
Bundles without them (older ones, and the default export: the split measured slower, see
salkit.export.graphs_coop) run ``energy_grad`` every step."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError
from salkit.kernels.coop import LOGIT_EPS, random_inputs
from salkit.runtime.backends.base import Device
from salkit.runtime.bundle import Manifest
from salkit.runtime.kinds.base import GraphRuns, RunnerOf, RuntimeKind, join_chunks, register_kind
from salkit.runtime.loops import CoopLoop, CoopRunners, check_steps

SPLIT_ENERGY_GRAPHS = ("energy_image", "energy_grad_step")


def splits_energy(manifest: Manifest, precision: str = "fp32") -> bool:
    """Whether a plan at ``precision`` runs the split energy gradient: the bundle holds both split
    graphs, and the precision does not give ``energy_grad`` a reduced artefact (an int8 graph the
    export gated and timed) that the split graphs lack — that plan keeps the graph it was judged with."""
    if not all(name in manifest.graphs for name in SPLIT_ENERGY_GRAPHS):
        return False
    reduced = manifest.variants.get(precision, {})
    return "energy_grad" not in reduced or all(name in reduced for name in SPLIT_ENERGY_GRAPHS)


class CoopKind(RuntimeKind):
    name = "coop"
    # encoder: image → feat0..featN ; latent_decoder: feat0..featN, latent → logits
    # generator: image, latent → logits ; energy: saliency, image → energy
    # energy_grad: saliency, image → grad   (saliency is in LOGIT space, see Manifest.coop)
    # optional, both or neither: energy_image: image → image_term ; energy_grad_step: saliency, image_term → grad
    graphs = ("generator", "encoder", "latent_decoder", "energy", "energy_grad")
    served_models = ("saliency", "refine")
    refines = True
    uncertainty = True
    takes_samples = True
    bench_paths = ("split", "whole")

    def settings(self, manifest: Manifest) -> dict[str, Any]:
        return manifest.coop

    def config_settings(self, manifest: Manifest) -> dict[str, Any]:
        keys = ("latent_dim", "langevin_step", "langevin_steps", "samples", *(("refine_steps",) if "refine_steps" in manifest.coop else ()))
        return {k: manifest.coop.get(k) for k in keys}

    def defaults(self, manifest: Manifest, samples: int | None, steps: int | None) -> tuple[int, int]:
        coop = manifest.coop
        n = coop.get("samples", 1) if samples is None else samples
        k = coop.get("langevin_steps", 0) if steps is None else steps
        return check_steps("samples", n, 1), check_steps("steps", k, 0)

    def refine_steps(self, manifest: Manifest, steps: int | None) -> int:
        # The export may judge refine on other models' maps apart from the predict (salkit.export.energy_steps).
        coop = manifest.coop
        k = coop.get("refine_steps", coop.get("langevin_steps", 0)) if steps is None else steps
        return check_steps("steps", k, 0)

    def build_loop(self, manifest: Manifest, runner: RunnerOf, device: Device, precision: str = "fp32") -> CoopLoop:
        coop = manifest.coop
        split = splits_energy(manifest, precision)
        return CoopLoop(
            CoopRunners(
                encoder=runner("encoder"),
                latent_decoder=runner("latent_decoder"),
                energy_grad=None if split else runner("energy_grad"),
                generator=None,  # loaded on first use of the whole-generator path
                energy_image=runner("energy_image") if split else None,
                energy_grad_step=runner("energy_grad_step") if split else None,
            ),
            device,
            size=manifest.input_size,
            latent_dim=int(coop["latent_dim"]),
            step_size=float(coop["langevin_step"]),
            logit_eps=float(coop.get("logit_eps", LOGIT_EPS)),
        )

    def predict(self, loop: CoopLoop, x: np.ndarray, chunks: list[slice], *, samples: int, steps: int, noise: bool,
                uncertainty: bool, seed: int | None, path: str, latents: np.ndarray | None,
                noise_values: np.ndarray | None, runner: RunnerOf) -> dict[str, np.ndarray]:
        latent_dim = loop.latent_dim
        if latents is None or (noise and noise_values is None):
            # The seed convention of kernels.coop.random_inputs, shared with the Triton model.
            drawn, kicks = random_inputs(seed, samples=samples, batch=x.shape[0], latent_dim=latent_dim, steps=steps,
                                         size=x.shape[2], noise=noise and noise_values is None)
            latents = drawn if latents is None else latents
            noise_values = kicks if noise_values is None else noise_values
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 3 or latents.shape[1:] != (x.shape[0], latent_dim) or latents.shape[0] < 1:
            raise SalkitError(f"latents must have shape (N, {x.shape[0]}, {latent_dim}), got {latents.shape}")
        if noise_values is not None and noise_values.shape != (steps, x.shape[0], 1, *x.shape[2:]):
            raise SalkitError(f"noise_values must have shape {(steps, x.shape[0], 1, *x.shape[2:])}, got {noise_values.shape}")
        if path == "whole" and loop.runners.generator is None:
            loop.runners.generator = runner("generator")
        parts = []
        for s in chunks:
            noise_part = None if noise_values is None else noise_values[:, s]
            parts.append(loop.predict(x[s], latents[:, s], steps=steps, noise=noise_part, uncertainty=uncertainty, path=path))
        return join_chunks(parts)

    def refine(self, loop: CoopLoop, x: np.ndarray, maps: np.ndarray, chunks: list[slice], *, steps: int,
               noise_values: np.ndarray | None) -> np.ndarray:
        parts = [loop.refine(x[s], maps[s].astype(np.float32), steps=steps, noise=None if noise_values is None else noise_values[:, s])
                 for s in chunks]
        return np.concatenate(parts)

    def latent_dim(self, manifest: Manifest) -> int:
        return int(manifest.coop.get("latent_dim", 1))

    def step_size(self, manifest: Manifest) -> float:
        return float(manifest.coop.get("langevin_step", 0.0))

    def graph_runs(self, samples: int, steps: int, loop: CoopLoop | None = None) -> dict[str, dict[str, GraphRuns]]:
        # The N samples are decoded in one call on N·B rows; K Langevin steps on the B mean maps
        # (a loop with the split energy: its image share once, then K steps from it).
        if loop is not None and loop.runners.split_energy:
            langevin = {"energy_image": GraphRuns(1 if steps else 0), "energy_grad_step": GraphRuns(steps)}
        else:
            langevin = {"energy_grad": GraphRuns(steps)}
        return {
            "split": {"encoder": GraphRuns(1), "latent_decoder": GraphRuns(1, rows=samples), **langevin},
            "whole": {"generator": GraphRuns(1, rows=samples), **langevin},
        }

    def bench_call(self, predictor: Any, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
        return lambda: predictor.predict_tensor(x, latents=latents, steps=steps, uncertainty=True, path=path)

    def graph_calls(self, loop: CoopLoop, batch: int, samples: int) -> dict[str, Callable[[], None]]:
        ws = loop.workspace(batch, samples, "split")
        runners = loop.runners
        calls = {"encoder": lambda: runners.encoder.run(ws.encode), "latent_decoder": lambda: runners.latent_decoder.run(ws.decode)}
        if runners.split_energy:
            calls["energy_image"] = ws.prepare_energy
            calls["energy_grad_step"] = lambda: ws.grad_runner.run(ws.grad_bind[0])
        else:
            calls["energy_grad"] = lambda: ws.grad_runner.run(ws.grad_bind[0])
        return calls


register_kind(CoopKind())
