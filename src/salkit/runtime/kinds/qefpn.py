"""The QE-FPN kind (implicit equilibrium model): encoder / f / decoder graphs and the fixed
Broyden solve of :mod:`salkit.runtime.loops_qefpn`; predict reports iterations and residuals."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from salkit.runtime.backends.base import Device
from salkit.runtime.bundle import Manifest
from salkit.runtime.kinds.base import GraphRuns, RunnerOf, RuntimeKind, join_chunks, register_kind
from salkit.runtime.loops import check_steps
from salkit.runtime.loops_qefpn import QEFPNLoop, QEFPNRunners


class QEFPNKind(RuntimeKind):
    name = "qefpn"
    # encoder: image → injection (B, D) ; f: z (B, D), injection (B, D) → f_z (B, D)
    # decoder: z (B, D) → logits (B, 1, S, S)
    graphs = ("encoder", "f", "decoder")
    served_models = ("qefpn",)
    stats = ("iterations", "residual")

    def settings(self, manifest: Manifest) -> dict[str, Any]:
        return manifest.qefpn

    def config_settings(self, manifest: Manifest) -> dict[str, Any]:
        q = manifest.qefpn
        return {**{k: q.get(k) for k in ("broyden_iterations", "broyden_memory", "broyden_tol")},
                "stop_mode": q.get("stop_mode", q.get("broyden_stop_mode", "rel"))}

    def defaults(self, manifest: Manifest, samples: int | None, steps: int | None) -> tuple[int, int]:
        t = manifest.qefpn.get("broyden_iterations", 0) if steps is None else steps
        return 1, check_steps("steps (Broyden iterations)", t, 0)

    def build_loop(self, manifest: Manifest, runner: RunnerOf, device: Device, precision: str = "fp32") -> QEFPNLoop:
        q = manifest.qefpn
        return QEFPNLoop(
            QEFPNRunners(runner("encoder"), runner("f"), runner("decoder")),
            device,
            size=manifest.input_size,
            state_dim=int(q["state_dim"]),
            iterations=int(q["broyden_iterations"]),
            memory=int(q["broyden_memory"]) if q.get("broyden_memory") else None,
            tol=float(q.get("broyden_tol", 1e-3)),
            stop_mode=str(q.get("stop_mode", "rel")),
        )

    def predict(self, loop: QEFPNLoop, x: np.ndarray, chunks: list[slice], *, samples: int, steps: int, noise: bool,
                uncertainty: bool, seed: int | None, path: str, latents: np.ndarray | None,
                noise_values: np.ndarray | None, runner: RunnerOf) -> dict[str, np.ndarray]:
        return join_chunks([loop.predict(x[s], iterations=steps) for s in chunks])

    def graph_runs(self, samples: int, steps: int, loop: Any = None) -> dict[str, dict[str, GraphRuns]]:
        # T Broyden steps plus the one f at z0.
        return {"split": {"encoder": GraphRuns(1), "f": GraphRuns(steps + 1), "decoder": GraphRuns(1)}}

    def bench_call(self, predictor: Any, x: np.ndarray, latents: np.ndarray, steps: int, path: str) -> Callable[[], dict]:
        return lambda: predictor.predict_tensor(x, steps=steps)

    def graph_calls(self, loop: QEFPNLoop, batch: int, samples: int) -> dict[str, Callable[[], None]]:
        ws, runners = loop.workspace(batch), loop.runners
        return {"encoder": lambda: runners.encoder.run(ws.encode), "f": lambda: runners.f.run(ws.f),
                "decoder": lambda: runners.decoder.run(ws.decode)}


register_kind(QEFPNKind())
