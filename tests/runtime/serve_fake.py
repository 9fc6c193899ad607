"""``python -m tests.runtime.serve_fake --port N``: the real server stack on the fake predictor.

Used by the tests that need a real uvicorn process (tritonclient, SIGTERM, load) before or
besides real bundles.
"""

from __future__ import annotations

import argparse
import sys

from salkit.runtime.server.run import run_server
from tests.runtime.fake_predictor import FakePredictor


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=None)
    parser.add_argument("--max-body-bytes", type=int, default=32 << 20)
    parser.add_argument("--kind", default="coop")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per backend call")
    parser.add_argument("--per-row", type=float, default=0.0, help="extra seconds per row")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--size", type=int, default=None, help="input size (default: the fake's 16)")
    args = parser.parse_args()
    return run_server(
        # The warm-up (predict + refine for coop, predict for qefpn) runs without the simulated delay.
        lambda: FakePredictor(args.kind, delay=args.delay, per_row=args.per_row, size=args.size, free_calls=2 if args.kind == "coop" else 1),
        port=args.port,
        grpc_port=args.grpc_port,
        max_body_bytes=args.max_body_bytes,
        max_batch_size=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        token=args.token,
        log_level="warning",
    )


if __name__ == "__main__":
    sys.exit(main())
