"""The cooperative kind (LVM generator + energy model): encoder / latent_decoder / energy_grad
graphs, the Langevin loop of :mod:`salkit.runtime.loops`, predict with uncertainty, and refine."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from salkit.kernels.coop import LOGIT_EPS, random_inputs
from salkit.kernels.errors import SalkitError
from salkit.runtime.backends.base import Device
from salkit.runtime.bundle import Manifest
from salkit.runtime.kinds.base import GraphRuns, RunnerOf, RuntimeKind, join_chunks, register_kind
from salkit.runtime.loops import CoopLoop, CoopRunners, check_steps


class CoopKind(RuntimeKind):
    name = "coop"
    # encoder: image → feat0..featN ; latent_decoder: feat0..featN, latent → logits
    # generator: image, latent → logits ; energy: saliency, image → energy
    # energy_grad: saliency, image → grad   (saliency is in LOGIT space, see Manifest.coop)
    graphs = ("generator", "encoder", "latent_decoder", "energy", "energy_grad")
    served_models = ("saliency", "refine")
    refines = True
    uncertainty = True
    takes_samples = True
    bench_paths = ("split", "whole")

    def settings(self, manifest: Manifest) -> dict[str, Any]:
        return manifest.coop

    def config_settings(self, manifest: Manifest) -> dict[str, Any]:
        return {k: manifest.coop.get(k) for k in ("latent_dim", "langevin_step", "langevin_steps", "samples")}

    def defaults(self, manifest: Manifest, samples: int | None, steps: int | None) -> tuple[int, int]:
        coop = manifest.coop
        n = coop.get("samples", 1) if samples is None else samples
        k = coop.get("langevin_steps", 0) if steps is None else steps
        return check_steps("samples", n, 1), check_steps("steps", k, 0)

    def build_loop(self, manifest: Manifest, runner: RunnerOf, device: Device) -> CoopLoop:
        coop = manifest.coop
        return CoopLoop(
            CoopRunners(
                encoder=runner("encoder"),
                latent_decoder=runner("latent_decoder"),
                energy_grad=runner("energy_grad"),
                generator=None,  # loaded on first use of the whole-generator path
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

    def graph_runs(self, samples: int, steps: int) -> dict[str, dict[str, GraphRuns]]:
        # The N samples are decoded in one call on N·B rows; K Langevin steps on the B mean maps.
        langevin = GraphRuns(steps)
        return {
            "split": {"encoder": GraphRuns(1), "latent_decoder": GraphRuns(1, rows=samples), "energy_grad": langevin},
            "whole": {"generator": GraphRuns(1, rows=samples), "energy_grad": langevin},
        }

    def bench_call(self, predictor: Any, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
        return lambda: predictor.predict_tensor(x, latents=latents, steps=steps, uncertainty=True, path=path)

    def graph_calls(self, loop: CoopLoop, batch: int, samples: int) -> dict[str, Callable[[], None]]:
        ws = loop.workspace(batch, samples, "split")
        runners = loop.runners
        return {"encoder": lambda: runners.encoder.run(ws.encode), "latent_decoder": lambda: runners.latent_decoder.run(ws.decode),
                "energy_grad": lambda: runners.energy_grad.run(ws.grad_bind[0])}


register_kind(CoopKind())
