"""``make loadtest``: locust against a local ``sal-runtime serve``, real photographs, a bounded run.

    python scripts/loadtest.py --bundle BUNDLE [--duration 60] [--users 16] [--max-batch USERS]
                               [--max-delay-ms 5] [--backend auto] [--data ../shared/data/pascal-s]
                               [--split test] [--out runs/loadtest] [--no-bench]

1. starts ``sal-runtime serve`` on a free 127.0.0.1 port (log: OUT/server.log) and waits for ready;
2. warms it with a few requests, reads its RSS and model statistics;
3. runs ``locust --headless`` (scripts/loadtest_locustfile.py: every user sends binary KServe v2
   requests of the split's photographs back to back) for ``--duration`` seconds;
4. reads RSS and statistics again, stops the server with SIGTERM (its exit code is recorded);
5. runs ``sal-runtime bench`` on the same bundle, backend (the one the server reports in its model
   config) and batch size, on the same photographs, for the throughput comparison;
6. writes OUT/loadtest.json and OUT/loadtest.csv (one row) next to locust's own CSVs.

The server is always stopped on the way out, also on failure or Ctrl-C. Traffic goes to 127.0.0.1
only. Exit code: 0 when the run completed (whatever the numbers), 1 if it could not be carried out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime
import io
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from salkit.runtime.cpu import cpu_info
from salkit.runtime.server.launch import free_port, rss_kib, stop_server, wait_ready

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADER = "Inference-Header-Content-Length"


def photographs(data: Path, split: str, limit: int | None) -> list[Path]:
    listing = data / f"{split}.txt"
    if not listing.is_file():
        raise SystemExit(f"error: {listing} does not exist (--data must hold {split}.txt and img/)")
    paths = []
    for stem in listing.read_text().split():
        found = sorted((data / "img").glob(f"{stem}.*"))
        if not found:
            raise SystemExit(f"error: {split}.txt names {stem!r} but {data / 'img'} has no such image")
        paths.append(found[0])
    return paths[:limit] if limit else paths


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def infer_once(url: str, model: str, path: Path) -> None:
    """One binary v2 request, as the locust users send it (warm-up)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    head = json.dumps({"inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [1, *rgb.shape],
                                   "parameters": {"binary_data_size": rgb.nbytes}}],
                       "outputs": [{"name": "SALIENCY", "parameters": {"binary_data": True}}]}).encode()  # fmt: skip
    request = urllib.request.Request(url + f"/v2/models/{model}/infer", data=head + rgb.tobytes(), method="POST",
                                     headers={HEADER: str(len(head)), "Content-Type": "application/octet-stream"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()


def locust_summary(records_path: Path, locust_json: Path) -> dict[str, Any]:
    """Requests, failures, throughput and latency (ms) from the per-request records the locustfile
    writes: every request sent, also those that finished during the stop timeout. Throughput is
    requests over the span from the first request's start to the last answer; percentiles are
    exact (numpy's linear interpolation), not locust's two-significant-digit buckets."""
    import numpy as np

    rows = json.loads(records_path.read_text())["requests"]
    if not rows:
        raise RuntimeError("locust sent no request")
    starts = np.array([r[0] for r in rows])
    ms = np.array([r[1] for r in rows])
    ok = np.array([r[2] for r in rows])
    span = float((starts + ms / 1e3).max() - starts.min())
    (theirs,) = json.loads(locust_json.read_text())  # locust's own count, as a cross-check
    return {
        "requests": len(rows),
        "failures": int((~ok).sum()),
        "requests_per_s": len(rows) / span,
        "span_s": span,
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "locust_counted": {"requests": theirs["num_requests"], "failures": theirs["num_failures"]},
    }


def stats_delta(before: dict, after: dict, batch: int) -> dict[str, Any]:
    """What the server's own statistics say about the run (counters after minus before)."""
    b, a = before["model_stats"][0], after["model_stats"][0]
    rows = a["inference_count"] - b["inference_count"]
    calls = a["execution_count"] - b["execution_count"]
    parts = {}
    for key in ("success", "fail", "compute_input", "queue", "compute_infer", "compute_output"):
        count = a["inference_stats"][key]["count"] - b["inference_stats"][key]["count"]
        ns = a["inference_stats"][key]["ns"] - b["inference_stats"][key]["ns"]
        parts[key] = {"count": count, "mean_ms": ns / count / 1e6 if count else None}
    full = {"count": 0, "ns": 0}
    for side, sign in ((a, 1), (b, -1)):
        for entry in side["batch_stats"]:
            if entry["batch_size"] == batch:
                full["count"] += sign * entry["compute_infer"]["count"]
                full["ns"] += sign * entry["compute_infer"]["ns"]
    return {
        "rows": rows,
        "executions": calls,
        "mean_batch": rows / calls if calls else None,
        "full_batch_calls": full["count"],
        "full_batch_compute_ms": full["ns"] / full["count"] / 1e6 if full["count"] else None,
        "per_request": parts,
    }


def run_bench(args: argparse.Namespace, backend: str, out: Path) -> dict[str, Any]:
    record_path = out / "bench.json"
    command = ["sal-runtime", "bench", "--engine", str(args.bundle), "--backend", backend, "--batch", str(args.max_batch),
               "--input", str(args.data / "img"), "--repeat", str(args.bench_repeat), "--gemm-size", "512", "--json", str(record_path)]  # fmt: skip
    subprocess.run(command, check=True, timeout=3600, stdout=subprocess.DEVNULL)
    record = json.loads(record_path.read_text())
    entry = record[args.kind][str(args.max_batch)]  # bench keeps its numbers under the kind's name
    return {"command": shlex.join(command), "images_per_s": entry["images_per_s"], "p50_ms": entry["p50_ms"], "p99_ms": entry["p99_ms"]}


def write_record(out: Path, record: dict[str, Any]) -> None:
    from salkit.base.atomic import atomic_write_text

    atomic_write_text(out / "loadtest.json", json.dumps(record, indent=2) + "\n")
    flat = {
        "date": record["date"], "cpu": record["machine"]["cpu"], "load_before": record["machine"]["load_before"][0],
        "load_after": record["machine"]["load_after"][0], "bundle": record["bundle"]["path"], "backend": record["server"]["backend"],
        "users": record["settings"]["users"], "duration_s": record["settings"]["duration_s"], "max_batch": record["settings"]["max_batch"],
        **{k: record["locust"][k] for k in ("requests", "failures", "requests_per_s", "p50_ms", "p95_ms", "p99_ms")},
        "mean_batch": record["server"]["stats"]["mean_batch"], "full_batch_compute_ms": record["server"]["stats"]["full_batch_compute_ms"],
        "rss_before_kib": record["server"]["rss_before_kib"], "rss_after_kib": record["server"]["rss_after_kib"],
        "bench_images_per_s": (record.get("bench") or {}).get("images_per_s"), "server_exit_code": record["server"]["exit_code"],
    }  # fmt: skip
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(flat))
    writer.writeheader()
    writer.writerow(flat)
    atomic_write_text(out / "loadtest.csv", text.getvalue())


def targets(record: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the numbers it compares (None when one side is missing)."""
    locust, server, bench = record["locust"], record["server"], record.get("bench") or {}
    ratio = lambda a, b: a / b if a is not None and b else None
    throughput = ratio(locust["requests_per_s"], bench.get("images_per_s"))
    # One full batch's compute: the server's own statistics when it ran full batches; otherwise
    # (closed-loop users often split into two alternating part batches) the bench's p50 at that
    # batch size, same bundle, backend and photographs.
    full_ms, source = server["stats"]["full_batch_compute_ms"], "server statistics"
    if full_ms is None:
        full_ms, source = bench.get("p50_ms"), "sal-runtime bench p50"
    p99 = ratio(locust["p99_ms"], full_ms)
    growth = ratio(server["rss_after_kib"] - server["rss_before_kib"], server["rss_before_kib"])
    return {
        "zero_failures": locust["failures"] == 0,
        "throughput_vs_bench": throughput, "throughput_ok": None if throughput is None else throughput >= 0.9,
        "full_batch_compute_ms": full_ms, "full_batch_compute_from": source,
        "p99_vs_full_batch_compute": p99, "p99_ok": None if p99 is None else p99 <= 2.0,
        "rss_growth": growth, "rss_ok": None if growth is None else growth <= 0.10,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("--users", type=int, default=16)
    # One batch holds every user: in a closed loop with more users than the batch, each request
    # waits for a whole batch ahead of it before its own (Little's law: latency = users ÷ throughput).
    parser.add_argument("--max-batch", type=int, default=None, help="the server's maximum batch (default: --users)")
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "pascal-s")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit-images", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2, help="warm-up requests per user before the RSS baseline")
    parser.add_argument("--bench-repeat", type=int, default=5)
    parser.add_argument("--no-bench", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "loadtest")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    args = parser.parse_args()
    args.max_batch = args.users if args.max_batch is None else args.max_batch
    if args.duration < 1 or args.users < 1 or args.max_batch < 1:
        raise SystemExit("error: --duration, --users and --max-batch must be >= 1")
    if not (args.bundle / "manifest.json").is_file():
        raise SystemExit(f"error: {args.bundle} is not a bundle (no manifest.json)")
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    from salkit.runtime.kinds import get_kind

    args.kind = str(manifest.get("model_kind"))
    model = get_kind(args.kind).served_models[0]  # the model sal-runtime serve answers /predict with
    photos = photographs(args.data, args.split, args.limit_images)
    args.out.mkdir(parents=True, exist_ok=True)
    listing = args.out / "images.txt"
    listing.write_text("".join(f"{p.resolve()}\n" for p in photos))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["sal-runtime", "serve", "--engine", str(args.bundle), "--host", "127.0.0.1", "--port", str(port),
               "--backend", args.backend, "--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
               "--log-level", "warning"]  # fmt: skip
    load_before = os.getloadavg()
    log = open(args.out / "server.log", "wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready_s = wait_ready(url, proc, args.ready_timeout)
        config = get_json(url + f"/v2/models/{model}/config")
        backend = config["parameters"]["salkit_backend"]["string_value"]
        # Warm-up: every user a few requests at once, so full batches have run before the baseline.
        with concurrent.futures.ThreadPoolExecutor(args.users) as pool:
            list(pool.map(lambda i: infer_once(url, model, photos[i % len(photos)]), range(args.warmup * args.users)))
        rss_before = rss_kib(proc.pid)
        stats_before = get_json(url + f"/v2/models/{model}/stats")
        prefix = args.out / "locust"
        locust = [sys.executable, "-m", "locust", "-f", str(HERE / "loadtest_locustfile.py"), "--headless", "--host", url,
                  "-u", str(args.users), "-r", str(args.users), "-t", f"{args.duration}s", "--csv", str(prefix),
                  "--json-file", str(prefix), "--only-summary", "--stop-timeout", "60", "--loglevel", "WARNING"]  # fmt: skip
        records = args.out / "requests.json"
        records.unlink(missing_ok=True)
        env = {**os.environ, "LOADTEST_IMAGES": str(listing), "LOADTEST_MODEL": model, "LOADTEST_RECORDS": str(records)}
        started = time.monotonic()
        locust_run = subprocess.run(locust, env=env, timeout=args.duration + 300, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        elapsed = time.monotonic() - started
        (args.out / "locust.log").write_bytes(locust_run.stdout)
        rss_after = rss_kib(proc.pid)
        stats_after = get_json(url + f"/v2/models/{model}/stats")
    finally:
        exit_code = stop_server(proc, timeout=60)
        log.close()
    load_after = os.getloadavg()
    record: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu": cpu_info().model, "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
        "bundle": {"path": str(args.bundle), "manifest": {k: manifest.get(k) for k in ("model_kind", "model_name", "input_size", "precision")}},
        "settings": {"users": args.users, "duration_s": args.duration, "max_batch": args.max_batch, "max_delay_ms": args.max_delay_ms,
                     "model": model, "images": len(photos), "split": args.split, "outputs": ["SALIENCY"]},
        "locust": {**locust_summary(records, Path(f"{prefix}.json")), "exit_code": locust_run.returncode, "wall_s": elapsed},
        "server": {"command": shlex.join(command), "backend": backend, "ready_s": ready_s, "rss_before_kib": rss_before,
                   "rss_after_kib": rss_after, "exit_code": exit_code, "stats": stats_delta(stats_before, stats_after, args.max_batch)},
    }  # fmt: skip
    if not args.no_bench:
        record["bench"] = run_bench(args, backend, args.out)
    record["targets"] = targets(record)
    write_record(args.out, record)
    print(json.dumps({k: record[k] for k in ("locust", "targets")}, indent=2))
    print(f"record: {args.out / 'loadtest.json'}, {args.out / 'loadtest.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
