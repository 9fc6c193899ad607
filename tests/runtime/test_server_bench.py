"""The serving bench: with a backend whose cost is mostly per call (like an accelerator at small
batch), dynamic batching must beat batch-1 serving clearly; the report's numbers are consistent."""

from __future__ import annotations

import pytest

from salkit.base.errors import SalkitError
from salkit.runtime.server.bench import bench_serving, format_report
from tests.runtime.server_helpers import FAKE_SERVER

pytestmark = pytest.mark.timeout(180)


def test_batching_beats_batch1_when_calls_have_fixed_cost() -> None:
    # 40 ms per backend call regardless of rows: batch-1 serves 25 req/s at most, batches of 8 up to 200.
    def command(max_batch: int, max_delay_ms: float) -> list[str]:
        return [*FAKE_SERVER, "--delay", "0.04", "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms)]

    report = bench_serving(None, clients=8, requests_per_client=6, max_batch=8, max_delay_ms=5, server_command=command,
                           input_size=16, warmup_per_client=1)  # fmt: skip
    batched, single = report["batched"], report["batch1"]
    assert batched["requests"] == single["requests"] == 48 and batched["failures"] == single["failures"] == 0
    assert single["mean_batch"] == 1.0 and batched["mean_batch"] > 3
    assert single["throughput_rps"] < 25 * 1.1  # the fixed cost bounds batch-1 serving
    assert report["speedup"] > 2.5, format_report(report)
    assert batched["p50_ms"] <= batched["p99_ms"] and report["speedup"] == batched["throughput_rps"] / single["throughput_rps"]
    assert "speedup" in format_report(report)


def test_bench_needs_a_bundle_or_a_command() -> None:
    with pytest.raises(SalkitError, match="needs a bundle"):
        bench_serving(None)
    with pytest.raises(SalkitError, match="must be >= 1"):
        bench_serving(None, clients=0)
