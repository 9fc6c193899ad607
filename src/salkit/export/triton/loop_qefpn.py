"""The QE-FPN loop of the Triton loop model (``export-trt --triton-repo``).

Copied next to the loop model (``loop_model.py`` of this package) as ``salkit_loop.py``; it runs in Triton's
Python backend with numpy and the vendored ``salkit.kernels`` only, the fixed-iteration Broyden
solve sal-runtime runs (``kernels.broyden.solve_fixed``). ``call(graph, inputs, outputs)`` runs
one graph model of the repository (BLS). Request parameter: steps (Broyden iterations).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from salkit.kernels import coop
from salkit.kernels.broyden import solve_fixed

GraphCall = Callable[[str, dict, list], list]


def run(call: GraphCall, x: np.ndarray, params: dict, s: dict) -> dict:
    """IMAGE (B,3,S,S) → SALIENCY (B,1,S,S), ITERATIONS (B,), RESIDUAL (B,)."""
    iterations = int(params.get("steps", s["broyden_iterations"]))
    (injection,) = call("encoder", {"image": x}, ["injection"])

    def f(z: np.ndarray) -> np.ndarray:
        return call("f", {"z": z, "injection": injection}, ["f_z"])[0]

    z, stats = solve_fixed(f, np.zeros(injection.shape, np.float32), iterations, tol=s["broyden_tol"],
                           memory=s["broyden_memory"], stop_mode=s["stop_mode"])
    (logits,) = call("decoder", {"z": z}, ["logits"])
    return {"SALIENCY": coop.ARRAY_OPS.sigmoid(logits).astype(np.float32),
            "ITERATIONS": np.asarray(stats["iterations"], np.float32), "RESIDUAL": np.asarray(stats["residual"], np.float32)}
