"""``BatchingPredictor``: a Predictor whose concurrent calls share backend batches.

Same ``predict_tensor`` / ``refine_tensor`` / ``predict`` / ``refine`` as
:class:`salkit.runtime.predictor.Predictor`, routed through :class:`DynamicBatcher`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable

import numpy as np

from salkit.runtime.batching import BatchStats, DynamicBatcher
from salkit.runtime.frontend import ImageCalls


class BatchingPredictor(ImageCalls):
    """A ``Predictor`` whose tensor-level calls from many threads share batched backend calls.

    ``predict_tensor`` and ``refine_tensor`` take the Predictor's options (see :meth:`submit_predict`).
    Requests batch together only when their options match; a request with a ``seed`` runs on its
    own so its result equals an unbatched ``predictor.predict_tensor(x, seed=...)``. The wrapped
    predictor is driven by one worker thread; :meth:`close` drains the queue (it does not close
    the predictor, which the caller owns). ``predict`` / ``refine`` on images are ImageCalls'
    (salkit.runtime.frontend), as a Predictor's, over the batched tensor calls.
    """

    def __init__(
        self,
        predictor: Any,
        *,
        max_batch_size: int = 8,
        max_delay_ms: float = 5.0,
        max_queue: int | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.batcher = DynamicBatcher(
            self._dispatch,
            max_batch_size,
            max_delay_ms,
            max_queue=max_queue,
            on_batch=on_batch,
            on_queue_depth=on_queue_depth,
            name="predictor",
        )

    @property
    def manifest(self) -> Any:
        return self.predictor.manifest

    @property
    def backend_name(self) -> str:
        return self.predictor.backend_name

    def _dispatch(self, *arrays: np.ndarray, op: str, **options: Any) -> Any:
        if op == "predict":
            return self.predictor.predict_tensor(arrays[0], **options)
        if op == "refine":
            return self.predictor.refine_tensor(arrays[0], arrays[1], **options)
        raise ValueError(f"unknown batched operation {op!r}")

    def submit_predict(
        self,
        x: np.ndarray,
        *,
        samples: int | None = None,
        steps: int | None = None,
        noise: bool = False,
        uncertainty: bool = True,
        seed: int | None = None,
    ) -> concurrent.futures.Future:
        """``predict_tensor`` queued: its future. Requests whose options match share a batch."""
        params = {"op": "predict", "samples": samples, "steps": steps, "noise": bool(noise), "uncertainty": bool(uncertainty), "seed": seed}
        return self.batcher.submit([np.asarray(x, dtype=np.float32)], params, exclusive=seed is not None)

    def predict_tensor(self, x: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        """``Predictor.predict_tensor`` batched: the options are :meth:`submit_predict`'s."""
        return self.submit_predict(x, **options).result()

    async def predict_tensor_async(self, x: np.ndarray, **options: Any) -> dict[str, np.ndarray]:
        return await asyncio.wrap_future(self.submit_predict(x, **options))

    def submit_refine(self, x: np.ndarray, maps: np.ndarray, *, steps: int | None = None) -> concurrent.futures.Future:
        arrays = [np.asarray(x, dtype=np.float32), np.asarray(maps, dtype=np.float32)]
        return self.batcher.submit(arrays, {"op": "refine", "steps": steps})

    def refine_tensor(self, x: np.ndarray, maps: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        return self.submit_refine(x, maps, steps=steps).result()

    async def refine_tensor_async(self, x: np.ndarray, maps: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        return await asyncio.wrap_future(self.submit_refine(x, maps, steps=steps))

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        self.batcher.close(drain=drain, timeout=timeout)

    def __enter__(self) -> "BatchingPredictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
