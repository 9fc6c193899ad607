"""How the benches time a matrix product: the fastest of a few calls after a warm-up.

One definition for every engine's GEMM rate (numpy, ONNX Runtime, OpenVINO in
``salkit.runtime.bench``; torch in ``salkit.train.bench_torch``), so the peaks they are compared
by are measured alike. Standard library only.
"""

from __future__ import annotations

import time
from typing import Any, Callable


def best_gemm_rate(call: Callable[[], Any], size: int, repeats: int) -> float:
    """GFLOP/s of the fastest of ``repeats`` calls of a ``size``² matrix product, after one warm-up call
    (two operations per multiply-add)."""
    call()  # warm-up: threads start, pages fault in, kernels are chosen
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


__all__ = ["best_gemm_rate"]
