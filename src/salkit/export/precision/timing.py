"""Timing at export: best wall times of calls whose repeats alternate, so a neighbour's load on
the shared cores hits every candidate alike."""

from __future__ import annotations

import time
from typing import Any, Callable

GRAPH_REPEATS = 5
PLAN_REPEATS = 3


def best_interleaved(calls: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Best wall time of each call over ``repeats`` rounds (one untimed warm-up round first)."""
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


__all__ = ["GRAPH_REPEATS", "PLAN_REPEATS", "best_interleaved"]
