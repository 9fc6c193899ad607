"""scripts/loadtest.py's targets: p99 against one full batch's compute — the server's own statistics
when it ran full batches, else the bench's p50 at that batch size — and the other ratios."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "loadtest.py"


@pytest.fixture(scope="module")
def loadtest():
    spec = importlib.util.spec_from_file_location("loadtest_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(server_full_ms: float | None) -> dict:
    return {"locust": {"failures": 0, "requests_per_s": 9.0, "p99_ms": 3000.0},
            "server": {"stats": {"full_batch_compute_ms": server_full_ms}, "rss_before_kib": 1000, "rss_after_kib": 1150},
            "bench": {"images_per_s": 10.0, "p50_ms": 2000.0}}


def test_p99_uses_the_servers_full_batches_when_it_ran_them(loadtest) -> None:
    t = loadtest.targets(_record(1000.0))
    assert t["full_batch_compute_from"] == "server statistics" and t["p99_vs_full_batch_compute"] == 3.0 and not t["p99_ok"]
    assert t["throughput_vs_bench"] == pytest.approx(0.9) and t["throughput_ok"]
    assert t["rss_growth"] == pytest.approx(0.15) and not t["rss_ok"] and t["zero_failures"]


def test_p99_falls_back_to_the_bench_when_no_batch_was_full(loadtest) -> None:
    t = loadtest.targets(_record(None))
    assert t["full_batch_compute_from"] == "sal-runtime bench p50" and t["p99_vs_full_batch_compute"] == 1.5 and t["p99_ok"]
    no_bench = {**_record(None), "bench": {}}
    assert loadtest.targets(no_bench)["p99_ok"] is None  # nothing to compare with: not judged
