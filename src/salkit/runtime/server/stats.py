"""Per-model inference statistics in Triton's schema (``/v2/models/{m}/stats``, gRPC ModelStatistics).

Counts and cumulative nanoseconds, as Triton keeps them:

* ``inference_count`` — rows (images) the backend computed; ``execution_count`` — backend calls.
  A batch of 8 one-image requests adds 8 and 1.
* ``inference_stats`` — one entry per request, ``count`` requests and ``ns`` summed over them:
  ``success`` (whole request, from its decoded body to its encoded answer), ``fail``,
  ``compute_input`` (parse, validate, resize and normalise), ``queue`` (waiting in the dynamic
  batcher), ``compute_infer`` (the backend call that computed it, shared with its batch-mates),
  ``compute_output`` (the rest: maps resized back, response encoded). For every successful request
  input + queue + infer + output = success, so ``success.ns / success.count`` is the mean latency
  the server adds and the parts say where it went.
* ``batch_stats`` — per batch size: ``compute_infer`` with ``count`` backend calls of that size.
  Pre- and post-processing run per request, not per batch, so only ``compute_infer`` is listed.
* ``last_inference`` — milliseconds since the epoch of the last backend call.

Backend calls reach a model through the batcher's ``on_batch`` hook (the call's ``op`` names the
model); requests are traced by the server's inference path. Thread-safe; no web framework here.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Hashable, Mapping

from salkit.runtime.batching import BatchStats, RequestTiming

REQUEST_STATS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


class _Duration:
    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += max(0, int(ns))

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class ModelStats:
    """The counters of one model."""

    def __init__(self, name: str, version: str) -> None:
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.requests = {key: _Duration() for key in REQUEST_STATS}
        self.batches: dict[int, _Duration] = {}  # batch size → compute_infer of calls that size

    def on_execution(self, rows: int, run_seconds: float) -> None:
        with self._lock:
            self.inference_count += rows
            self.execution_count += 1
            self.last_inference_ms = time.time_ns() // 1_000_000
            self.batches.setdefault(rows, _Duration()).add(round(run_seconds * 1e9))

    def on_success(self, total_ns: int, input_ns: int, queue_ns: int, infer_ns: int) -> None:
        with self._lock:
            self.requests["success"].add(total_ns)
            self.requests["compute_input"].add(input_ns)
            self.requests["queue"].add(queue_ns)
            self.requests["compute_infer"].add(infer_ns)
            self.requests["compute_output"].add(total_ns - input_ns - queue_ns - infer_ns)

    def on_failure(self, total_ns: int) -> None:
        with self._lock:
            self.requests["fail"].add(total_ns)

    def to_json(self) -> dict[str, Any]:
        """Triton's ``ModelStatistics`` as its HTTP endpoint writes it (numbers, snake_case keys)."""
        with self._lock:
            return {
                "name": self.name,
                "version": self.version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {key: d.to_json() for key, d in self.requests.items()},
                "batch_stats": [{"batch_size": size, "compute_infer": d.to_json()} for size, d in sorted(self.batches.items())],
            }


class RequestTrace:
    """Times one inference request; used as ``with stats.trace(model) as trace:``.

    Leaving the block normally records a success (with its parts), by an exception a failure.
    """

    def __init__(self, model: ModelStats) -> None:
        self.model = model
        self.start_ns = time.perf_counter_ns()
        self.input_ns = 0
        self.queue_ns = 0
        self.infer_ns = 0

    def input_done(self) -> None:
        self.input_ns = time.perf_counter_ns() - self.start_ns

    def batched(self, timing: RequestTiming | None) -> None:
        """The batcher's account of this request (adds up over several calls, e.g. refine + predict)."""
        if timing is not None:
            self.queue_ns += round(timing.queue_seconds * 1e9)
            self.infer_ns += round(timing.run_seconds * 1e9)

    def __enter__(self) -> "RequestTrace":
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        total = time.perf_counter_ns() - self.start_ns
        if kind is None:
            # The parts are measured inside the total; clocks cannot make them exceed it.
            self.model.on_success(total, min(self.input_ns, total), self.queue_ns, self.infer_ns)
        else:
            self.model.on_failure(total)


class ServerStats:
    """Every model's statistics; ``on_batch`` is the batcher hook, ``ops`` maps a call's op to a model."""

    def __init__(self, version: str = "1") -> None:
        self.version = version
        self._models: dict[str, ModelStats] = {}
        self._ops: dict[str, str] = {}

    def register(self, name: str, op: str | None = None) -> ModelStats:
        stats = self._models.setdefault(name, ModelStats(name, self.version))
        if op is not None:
            self._ops.setdefault(op, name)
        return stats

    def model(self, name: str) -> ModelStats:
        return self._models[name]

    def trace(self, name: str) -> RequestTrace:
        return RequestTrace(self._models[name])

    def on_batch(self, stats: BatchStats) -> None:
        params: Mapping[str, Hashable] = stats.params
        name = self._ops.get(str(params.get("op")))
        if name is not None:
            self._models[name].on_execution(stats.size, stats.run_seconds)

    def to_json(self, name: str | None = None) -> dict[str, Any]:
        """``{"model_stats": [...]}`` for one model, or every model when ``name`` is None."""
        names = list(self._models) if name is None else [name]
        return {"model_stats": [self._models[n].to_json() for n in names]}
