"""Dynamic batching shared by the HTTP server and concurrent Python API callers.

:class:`DynamicBatcher` queues requests (each a few arrays with a leading batch axis plus
hashable parameters) and hands them to one worker thread. The worker takes the oldest request,
waits at most ``max_delay_ms`` from that request's arrival for more requests with the same
parameters, concatenates up to ``max_batch_size`` rows, calls ``fn`` once and splits the outputs
back. Requests whose parameters differ are never mixed; they are served in arrival order of their
oldest member. One worker means the wrapped predictor sees one call at a time, so it needs no
locking of its own.

Callers use :meth:`DynamicBatcher.submit` (a :class:`concurrent.futures.Future`, for threads) or
:meth:`DynamicBatcher.submit_async` (awaitable, for asyncio); cancelling either before the batch
starts drops the request. A future that resolves with a result carries ``future.timing``
(:class:`RequestTiming`: its own queue wait and the backend time of the call that computed it).
:class:`~salkit.runtime.batching_predictor.BatchingPredictor` wraps a ``Predictor`` with the same
tensor-level signature. No torch here.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import math
import threading
import time
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

from salkit.base.errors import SalkitError

log = logging.getLogger(__name__)

# A delay above this is almost certainly seconds typed as milliseconds.
_MAX_DELAY_MS = 10_000.0


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


class QueueFullError(RuntimeError):
    """More rows are queued than ``max_queue`` allows; the caller should retry later."""


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """What one backend call looked like, passed to the ``on_batch`` hook."""

    size: int  # rows in the call
    requests: int  # requests that shared it
    wait_seconds: float  # oldest request's time in the queue
    run_seconds: float  # time spent inside fn
    params: Mapping[str, Hashable]


@dataclasses.dataclass(frozen=True)
class RequestTiming:
    """One request's way through the batcher, set as ``future.timing`` before its result."""

    queue_seconds: float  # from submit until its backend call (the first, when chunked) started
    run_seconds: float  # time inside fn for the call(s) that computed it
    batch_size: int  # rows of that call (its own rows when it ran alone in chunks)


@dataclasses.dataclass
class _Request:
    arrays: tuple[np.ndarray, ...]
    params: dict[str, Hashable]
    key: Hashable
    rows: int
    exclusive: bool
    future: concurrent.futures.Future
    enqueued: float


def _check_positive_int(value: object, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SalkitError(f"{name} must be an integer >= 1, got {value!r}: {hint}")
    return int(value)


def validate_batching(max_batch_size: object, max_delay_ms: object, max_queue: object = None) -> tuple[int, float, int]:
    """Check the batching knobs; every message says what a sensible value would be."""
    batch = _check_positive_int(
        max_batch_size, "max_batch_size", "use 1 to run every request on its own, or the engine's batch limit (e.g. 8)"
    )
    if isinstance(max_delay_ms, bool) or not isinstance(max_delay_ms, (int, float, np.integer, np.floating)):
        raise SalkitError(f"max_delay_ms must be a number of milliseconds, got {max_delay_ms!r}")
    delay = float(max_delay_ms)
    if not math.isfinite(delay) or delay < 0:
        raise SalkitError(
            f"max_delay_ms must be a finite number >= 0, got {max_delay_ms!r}: 0 runs a batch as soon as "
            "the worker is free, a few ms (e.g. 5) lets concurrent requests share a batch"
        )
    if delay > _MAX_DELAY_MS:
        raise SalkitError(
            f"max_delay_ms={delay:g} would hold each request up to {delay / 1000:g} s; the value is in "
            f"milliseconds (use at most {_MAX_DELAY_MS:g}, typically 1-20)"
        )
    if max_queue is None:
        queue = max(1024, 64 * batch)
    else:
        queue = _check_positive_int(max_queue, "max_queue", f"it must hold at least one batch ({batch} rows)")
        if queue < batch:
            raise SalkitError(f"max_queue={queue} is smaller than max_batch_size={batch}: use max_queue >= {batch}")
    return batch, delay, queue


def _rows_of(arrays: Sequence[np.ndarray]) -> int:
    if not arrays:
        raise SalkitError("a batched request needs at least one array")
    rows = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in arrays}
    if len(rows) != 1 or -1 in rows or 0 in rows:
        shapes = [tuple(np.shape(a)) for a in arrays]
        raise SalkitError(f"request arrays must share a non-empty leading batch axis, got shapes {shapes}")
    return rows.pop()


def _split(outputs: Any, counts: Sequence[int]) -> list[Any]:
    """Split fn's outputs (array, tuple of arrays or dict of arrays) by request row counts."""
    total = sum(counts)
    bounds = np.cumsum([0, *counts])

    def cut(array: np.ndarray) -> list[np.ndarray]:
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] != total:
            raise RuntimeError(f"batched fn returned shape {array.shape}; expected leading axis {total}")
        return [array[bounds[i] : bounds[i + 1]] for i in range(len(counts))]

    if isinstance(outputs, Mapping):
        parts = {name: cut(value) for name, value in outputs.items()}
        return [{name: pieces[i] for name, pieces in parts.items()} for i in range(len(counts))]
    if isinstance(outputs, tuple):
        parts_t = [cut(value) for value in outputs]
        return [tuple(pieces[i] for pieces in parts_t) for i in range(len(counts))]
    return cut(outputs)


def _concat(results: Sequence[Any]) -> Any:
    """Inverse of _split for the chunks of one oversized request."""
    first = results[0]
    if isinstance(first, Mapping):
        return {name: np.concatenate([r[name] for r in results]) for name in first}
    if isinstance(first, tuple):
        return tuple(np.concatenate([r[i] for r in results]) for i in range(len(first)))
    return np.concatenate([np.asarray(r) for r in results])


class DynamicBatcher:
    """Collect concurrent requests into batched calls of ``fn(*arrays, **params)``.

    ``fn`` receives the requests' arrays concatenated along axis 0 and returns an array, a tuple
    or a dict of arrays whose leading axis is the batch; each caller gets its own rows back.
    ``max_batch_size`` caps the rows per call (a larger request runs alone, in chunks);
    ``max_delay_ms`` is how long the oldest queued request may wait for company; ``max_queue``
    caps queued rows (beyond it :class:`QueueFullError`). Hooks: ``on_batch(BatchStats)`` after
    each call and ``on_queue_depth(rows)`` whenever the queue changes; hook errors are logged,
    never raised into the worker.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        max_batch_size: int = 8,
        max_delay_ms: float = 5.0,
        *,
        max_queue: int | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
        name: str = "batcher",
    ) -> None:
        if not callable(fn):
            raise SalkitError(f"DynamicBatcher needs a callable to batch, got {type(fn).__name__}")
        self.max_batch_size, self.max_delay_ms, self.max_queue = validate_batching(max_batch_size, max_delay_ms, max_queue)
        self._fn = fn
        self._on_batch = on_batch
        self._on_queue_depth = on_queue_depth
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closing = False
        self._drain = True
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # rows per call → count
        self._worker = threading.Thread(target=self._run, name=f"salkit-{name}", daemon=True)
        self._worker.start()

    # -- submitting -------------------------------------------------------------------------
    def submit(
        self,
        arrays: Sequence[np.ndarray],
        params: Mapping[str, Hashable] | None = None,
        *,
        exclusive: bool = False,
    ) -> concurrent.futures.Future:
        """Queue one request; the future resolves to its slice of ``fn``'s outputs.

        ``exclusive`` requests run in a call of their own (e.g. a seeded request whose random
        draws must not depend on the other rows of a batch).
        """
        arrays = tuple(np.asarray(a) for a in arrays)
        rows = _rows_of(arrays)
        params = dict(params or {})
        # Arrays can only be concatenated when their trailing shapes and dtypes agree.
        layout = tuple((a.shape[1:], a.dtype.str) for a in arrays)
        try:
            key = (tuple(sorted(params.items())), layout)
            hash(key)
        except TypeError:
            raise SalkitError(f"batching parameters must be hashable, got {params!r}") from None
        future: concurrent.futures.Future = concurrent.futures.Future()
        request = _Request(arrays, params, key, rows, bool(exclusive), future, time.monotonic())
        with self._cond:
            if self._closing:
                raise BatcherClosedError("the batcher is shutting down and takes no new requests")
            if self._queued_rows + rows > self.max_queue and self._queue:
                raise QueueFullError(f"{self._queued_rows} rows already queued (max_queue={self.max_queue}); retry later")
            self._queue.append(request)
            self._queued_rows += rows
            depth = self._queued_rows
            self._cond.notify()
        self._hook(self._on_queue_depth, depth)
        return future

    async def submit_async(
        self,
        arrays: Sequence[np.ndarray],
        params: Mapping[str, Hashable] | None = None,
        *,
        exclusive: bool = False,
    ) -> Any:
        """Awaitable :meth:`submit`; cancelling the awaiting task drops a request not yet started."""
        return await asyncio.wrap_future(self.submit(arrays, params, exclusive=exclusive))

    def __call__(self, *arrays: np.ndarray, timeout: float | None = None, **params: Hashable) -> Any:
        """Blocking convenience: ``batcher(x, samples=4)``."""
        return self.submit(arrays, params).result(timeout)

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return self._queued_rows

    # -- lifecycle --------------------------------------------------------------------------
    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` finish the queued ones, else fail them."""
        with self._cond:
            self._closing = True
            self._drain = drain
            self._cond.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)

    def __enter__(self) -> "DynamicBatcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker -----------------------------------------------------------------------------
    def _hook(self, hook: Callable[[Any], None] | None, value: Any) -> None:
        if hook is None:
            return
        try:
            hook(value)
        except Exception:  # a metrics bug must not stop inference
            log.exception("batcher hook %r failed", hook)

    def _take_group(self) -> list[_Request] | None:
        """Under the lock: wait for the oldest request's batch to fill or its deadline to pass."""
        while not self._queue:
            if self._closing:
                return None
            self._cond.wait()
        if self._closing and not self._drain:
            return None
        head = self._queue[0]
        if head.exclusive or head.rows >= self.max_batch_size:
            group = [head]
        else:
            deadline = head.enqueued + self.max_delay_ms / 1000.0
            while True:
                group, rows = [], 0
                for request in self._queue:
                    if request.key == head.key and not request.exclusive and rows + request.rows <= self.max_batch_size:
                        group.append(request)
                        rows += request.rows
                remaining = deadline - time.monotonic()
                if rows >= self.max_batch_size or remaining <= 0 or self._closing:
                    break
                self._cond.wait(remaining)
        taken = {id(r) for r in group}
        self._queue = collections.deque(r for r in self._queue if id(r) not in taken)
        self._queued_rows -= sum(r.rows for r in group)
        return group

    def _run(self) -> None:
        while True:
            with self._cond:
                group = self._take_group()
                depth = self._queued_rows
                if group is None:
                    leftovers = list(self._queue)
                    self._queue.clear()
                    self._queued_rows = 0
            if group is None:
                for request in leftovers:
                    if request.future.set_running_or_notify_cancel():
                        request.future.set_exception(BatcherClosedError("the batcher shut down before this request ran"))
                self._hook(self._on_queue_depth, 0)
                return
            self._hook(self._on_queue_depth, depth)
            self._execute(group)

    def _call(self, arrays: Sequence[np.ndarray], params: Mapping[str, Hashable]) -> tuple[Any, float]:
        start = time.perf_counter()
        outputs = self._fn(*arrays, **params)
        return outputs, time.perf_counter() - start

    def _execute(self, group: list[_Request]) -> None:
        live = [r for r in group if r.future.set_running_or_notify_cancel()]  # drop cancelled
        if not live:
            return
        started = time.monotonic()
        wait = started - min(r.enqueued for r in live)
        params = live[0].params
        try:
            if len(live) == 1 and live[0].rows > self.max_batch_size:
                request = live[0]
                chunks, run = [], 0.0
                for start in range(0, request.rows, self.max_batch_size):
                    part = [a[start : start + self.max_batch_size] for a in request.arrays]
                    outputs, seconds = self._call(part, params)
                    chunks.append(outputs)
                    run += seconds
                    self._record(BatchStats(part[0].shape[0], 1, wait, seconds, params))
                request.future.timing = RequestTiming(started - request.enqueued, run, request.rows)
                request.future.set_result(_concat(chunks))
                return
            arrays = [np.concatenate([r.arrays[i] for r in live]) for i in range(len(live[0].arrays))]
            outputs, seconds = self._call(arrays, params)
            pieces = _split(outputs, [r.rows for r in live])
        except Exception as err:  # every caller of the failed call learns why
            for request in live:
                if not request.future.done():
                    request.future.set_exception(err)
            return
        size = sum(r.rows for r in live)
        self._record(BatchStats(size, len(live), wait, seconds, params))
        for request, piece in zip(live, pieces, strict=True):
            request.future.timing = RequestTiming(started - request.enqueued, seconds, size)
            request.future.set_result(piece)

    def _record(self, stats: BatchStats) -> None:
        self.batch_sizes[stats.size] += 1
        self._hook(self._on_batch, stats)

