"""The serving bench: with a backend whose cost is mostly per call (like an accelerator at small
batch), dynamic batching forms batches and answers as batch-1 serving does; the report's numbers
are consistent. How much faster batching serves is the bench's record (``speedup`` and
``ceiling`` in its report), not a verdict here: a ratio of two timings depends on the machine's load."""

from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
import pytest

from salkit.base.errors import SalkitError
from salkit.runtime.server.bench import bench_serving, format_report
from tests.runtime.server_helpers import FAKE_SERVER, binary_request, decode_response, live_server

pytestmark = pytest.mark.timeout(180)

DELAY = ["--delay", "0.04"]  # 40 ms per backend call regardless of rows


def _served(command: list[str], images: list[np.ndarray]) -> list[np.ndarray]:
    """SALIENCY of each image, all sent at once by one client thread each."""
    requests = [binary_request([("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY", "parameters": {"binary_data": True}}])
                for x in images]  # fmt: skip
    with live_server(command) as (_, url):
        def post(request: tuple[bytes, dict]) -> httpx.Response:
            return httpx.post(f"{url}/v2/models/saliency/infer", content=request[0], headers=request[1], timeout=60)

        with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
            responses = list(pool.map(post, requests))
    assert all(r.status_code == 200 for r in responses), [r.text[:200] for r in responses if r.status_code != 200]
    return [decode_response(r.content, r.headers)["SALIENCY"] for r in responses]


def test_batching_forms_batches_when_calls_have_fixed_cost() -> None:
    def command(max_batch: int, max_delay_ms: float) -> list[str]:
        return [*FAKE_SERVER, *DELAY, "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms)]

    report = bench_serving(None, clients=8, requests_per_client=6, max_batch=8, max_delay_ms=5, server_command=command,
                           input_size=16, warmup_per_client=1)  # fmt: skip
    batched, single = report["batched"], report["batch1"]
    assert batched["requests"] == single["requests"] == 48 and batched["failures"] == single["failures"] == 0
    assert single["mean_batch"] == 1.0 and batched["mean_batch"] > 1, format_report(report)
    assert single["throughput_rps"] < 25 * 1.1  # batch-1 serving runs one 40 ms call at a time: at most 25 req/s
    assert batched["p50_ms"] <= batched["p99_ms"] and report["speedup"] == batched["throughput_rps"] / single["throughput_rps"]
    assert "speedup" in format_report(report)


def test_batched_answers_equal_the_unbatched_ones() -> None:
    rng = np.random.default_rng(3)
    images = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(8)]
    batched = _served([*FAKE_SERVER, *DELAY, "--max-batch", "8", "--max-delay-ms", "20"], images)
    single = _served([*FAKE_SERVER, *DELAY, "--max-batch", "1", "--max-delay-ms", "0"], images)
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bench_needs_a_bundle_or_a_command() -> None:
    with pytest.raises(SalkitError, match="needs a bundle"):
        bench_serving(None)
    with pytest.raises(SalkitError, match="must be >= 1"):
        bench_serving(None, clients=0)
