"""Serving benchmark: dynamic batching vs batch-1 under concurrent clients.

``bench_serving(bundle)`` starts ``sal-runtime serve`` twice on 127.0.0.1 — once with dynamic
batching (``--max-batch N --max-delay-ms D``), once with ``--max-batch 1 --max-delay-ms 0`` —
drives each with ``clients`` threads sending the same binary v2 request (FP32, already
normalised at the bundle's size, so the numbers measure the server and the model, not image
decoding), and reports throughput, p50/p99 latency and the mean batch the server formed (from
its /metrics). It also times one direct ``predict_tensor`` call at batch N in this process: the
"one batch's compute" that p99 is compared against.

Script: ``python -m salkit.runtime.server.bench BUNDLE [--clients 16] [--requests 32] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from salkit.base.errors import SalkitError, report_user_errors
from salkit.runtime.server.launch import start_server, stop_server


def serve_command(bundle: Path, backend: str, threads: int | None) -> Callable[[int, float], list[str]]:
    """``(max_batch, max_delay_ms) → argv`` of ``sal-runtime serve`` on ``bundle`` (``--port`` is appended)."""

    def command(max_batch: int, max_delay_ms: float) -> list[str]:
        cmd = [sys.executable, "-c", "from salkit.runtime.cli.main import main; main()", "serve", "--engine", str(bundle),
               "--backend", backend, "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms),
               "--log-level", "warning"]  # fmt: skip
        return cmd + (["--threads", str(threads)] if threads is not None else [])

    return command


def _request(size: int, parameters: dict[str, int], seed: int = 0) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    head = json.dumps(
        {
            "inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "SALIENCY", "parameters": {"binary_data": True}}],
            "parameters": parameters,
        }
    ).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def _drive(url: str, model: str, body: bytes, headers: dict[str, str], clients: int, per_client: int) -> tuple[list[float], float, int]:
    """(latencies in s, wall time in s, failures) for ``clients`` threads × ``per_client`` requests."""
    import httpx

    started: list[float] = []
    # The clock starts when every client is connected and ready (client set-up is not serving).
    barrier = threading.Barrier(clients, action=lambda: started.append(time.perf_counter()))

    first_error: list[str] = []

    def client(_: int) -> tuple[list[float], int]:
        latencies, failures = [], 0
        with httpx.Client(base_url=url, timeout=120) as http:
            barrier.wait(60)
            for _ in range(per_client):
                start = time.perf_counter()
                response = http.post(f"/v2/models/{model}/infer", content=body, headers=headers)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    failures += 1
                    first_error.append(f"{response.status_code} {response.text[:300]}")
        return latencies, failures

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started[0]
    if first_error and len(first_error) == clients * per_client:
        raise SalkitError(f"every benchmark request failed, e.g. {first_error[0]}")
    return [t for lat, _ in results for t in lat], elapsed, sum(f for _, f in results)


def _mean_batch(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    values = {name: float(v) for name, v in re.findall(r"^(salkit_batch_size_(?:sum|count)) ([0-9.e+-]+)$", text, re.M)}
    return values.get("salkit_batch_size_sum", 0.0) / max(values.get("salkit_batch_size_count", 0.0), 1.0)


def compute_seconds(bundle: Path, backend: str, threads: int | None, batch: int, repeats: int, options: dict[str, int]) -> float:
    """Median time of one direct ``predict_tensor`` call at ``batch`` rows (no server)."""
    from salkit.runtime.predictor import Predictor

    with Predictor.from_bundle(bundle, backend=backend, threads=threads) as predictor:
        size = predictor.manifest.input_size
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
        predictor.predict_tensor(x, uncertainty=False, **options)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.predict_tensor(x, uncertainty=False, **options)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_serving(
    bundle: str | Path | None,
    *,
    clients: int = 16,
    requests_per_client: int = 32,
    max_batch: int = 8,
    max_delay_ms: float = 5.0,
    backend: str = "ort-cpu",
    threads: int | None = None,
    samples: int | None = None,
    steps: int | None = None,
    warmup_per_client: int = 2,
    start_timeout: float = 180.0,
    server_command: Callable[[int, float], list[str]] | None = None,
    measure_compute: bool = True,
    input_size: int | None = None,
) -> dict[str, Any]:
    """Throughput and latency of dynamic batching vs batch-1 serving (see the module doc).

    ``samples`` / ``steps`` are sent as request parameters (None: the bundle's defaults).
    ``server_command`` replaces ``sal-runtime serve`` (e.g. a server on a stand-in predictor);
    ``measure_compute`` adds the direct batch-1 / batch-N compute times, whose ratio bounds
    what batching can gain on this backend: ``ceiling = N·t(1) / t(N)``. Without a bundle (a
    ``server_command`` on a stand-in), ``input_size`` gives the square side of the requests.
    """
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.kinds import kind_of

    if clients < 1 or requests_per_client < 1:
        raise SalkitError(f"clients and requests per client must be >= 1, got {clients} and {requests_per_client}")
    if bundle is not None:
        bundle = Path(bundle)
        manifest = load_bundle(bundle)
        kind = kind_of(manifest)
        model, size, takes_samples = kind.served_models[0], manifest.input_size, kind.takes_samples
    elif server_command is not None and input_size is not None:
        model, size, measure_compute, takes_samples = "saliency", input_size, False, True
    else:
        raise SalkitError("bench_serving needs a bundle, or a server_command and an input_size")
    options = {k: v for k, v in (("samples", samples), ("steps", steps)) if v is not None}
    if not takes_samples:
        options.pop("samples", None)
    body, headers = _request(size, options)
    command = server_command or serve_command(bundle, backend, threads)
    report: dict[str, Any] = {"bundle": str(bundle), "model": model, "clients": clients, "requests_per_client": requests_per_client,
                              "backend": backend, "threads": threads, "input_size": size, "options": options}  # fmt: skip
    for label, batch, delay in (("batched", max_batch, max_delay_ms), ("batch1", 1, 0.0)):
        proc, url = start_server(command(batch, delay), start_timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _drive(url, model, body, headers, clients, warmup_per_client)
            latencies, elapsed, failures = _drive(url, model, body, headers, clients, requests_per_client)
            mean_batch = _mean_batch(url)
        finally:
            stop_server(proc)
        lat_ms = np.asarray(latencies) * 1000.0
        report[label] = {
            "max_batch": batch,
            "max_delay_ms": delay,
            "requests": len(latencies),
            "failures": failures,
            "throughput_rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)),
            "mean_batch": mean_batch,
        }
    report["speedup"] = report["batched"]["throughput_rps"] / report["batch1"]["throughput_rps"]
    if measure_compute:
        one = compute_seconds(bundle, backend, threads, 1, repeats=10, options=options)
        full = compute_seconds(bundle, backend, threads, max_batch, repeats=10, options=options)
        report["compute_batch1_ms"] = one * 1000.0
        report["batch_compute_ms"] = full * 1000.0
        report["ceiling"] = max_batch * one / full
        report["p99_over_batch_compute"] = report["batched"]["p99_ms"] / report["batch_compute_ms"]
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['model']} on {report['backend']}, {report['clients']} clients × {report['requests_per_client']} requests, "
             f"input {report['input_size']}², options {report['options'] or 'bundle defaults'}"]  # fmt: skip
    for label in ("batched", "batch1"):
        r = report[label]
        lines.append(
            f"  {label:8s} max_batch={r['max_batch']:<3d} {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
            f"p99 {r['p99_ms']:7.1f} ms  mean batch {r['mean_batch']:.2f}  failures {r['failures']}"
        )
    lines.append(f"  speedup {report['speedup']:.2f}x")
    if "batch_compute_ms" in report:
        n = report["batched"]["max_batch"]
        lines.append(
            f"  direct compute: batch 1 {report['compute_batch1_ms']:.1f} ms, batch {n} {report['batch_compute_ms']:.1f} ms "
            f"(batching can gain at most {report['ceiling']:.2f}x here); batched p99 = {report['p99_over_batch_compute']:.2f}x one batch"
        )
    return "\n".join(lines)


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salkit.runtime.server.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32, help="requests per client")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None, help="latent samples per request (default: the bundle's)")
    parser.add_argument("--steps", type=int, default=None, help="Langevin steps / Broyden iterations (default: the bundle's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here (atomically)")
    args = parser.parse_args(argv)
    report = bench_serving(
        args.bundle, clients=args.clients, requests_per_client=args.requests, max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms, backend=args.backend, threads=args.threads, samples=args.samples, steps=args.steps,
    )  # fmt: skip
    print(format_report(report))
    if args.json is not None:
        from salkit.base.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
