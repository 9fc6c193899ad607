"""One inference request's way through the server, shared by HTTP and gRPC.

decode (protocol-specific) → check the inputs against the model → preprocess → the shared
dynamic batcher → resize maps back → encode (protocol-specific). The request is traced for the
model's statistics (salkit.runtime.server.stats): success or failure, and where the time went.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

import numpy as np

from salkit.runtime.server.models import ServedModel
from salkit.runtime.server.protocol import InferRequest
from salkit.runtime.server.stats import ServerStats

T = TypeVar("T")

# Requests up to this size are decoded, preprocessed and encoded on the event loop (tens of µs);
# larger ones go to a worker thread so one big image cannot stall every other connection.
INLINE_BYTES = 64 * 1024


async def on_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def run_inference(
    model: ServedModel,
    stats: ServerStats,
    size: int,
    decode: Callable[[], InferRequest],
    encode: Callable[[InferRequest, dict[str, np.ndarray]], T],
) -> T:
    """Decode, infer and encode one request of ``size`` bytes for ``model``."""
    offload = off_loop if size > INLINE_BYTES else on_loop
    with stats.trace(model.name) as trace:
        parsed = await offload(decode)
        wanted = model.check_request(parsed)
        prepared = await offload(model.prepare, parsed)
        trace.input_done()
        outputs = await model.infer(parsed, prepared, wanted, trace)
        return await offload(encode, parsed, outputs)
