"""``sal-runtime serve``: serve a bundle over HTTP (KServe v2, ``/predict``, ``/metrics``) and,
with ``--grpc-port``, KServe v2 over gRPC from the same process, models and batcher.

The web stack (uvicorn, Starlette) and the backends are imported inside the command, so
``sal-runtime --help`` works on an install without the ``serve`` extra.
"""

from __future__ import annotations

import ipaddress
import math
import os
import stat
import sys
from pathlib import Path

import click

from salkit.base.errors import SalkitError, report_user_errors
from salkit.runtime.cli.common import plan_options

MAX_BODY_MB_LIMIT = 4096.0


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SalkitError(f"--token-file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SalkitError(f"cannot read --token-file {path}: {err}") from None
    if not token or any(c.isspace() for c in token):
        raise SalkitError(f"--token-file {path} must hold one token without spaces (it is {'empty' if not token else 'multi-word'})")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        click.echo(f"warning: --token-file {path} is readable by other users (chmod 600 {path})", err=True)
    return token


def validate_options(port: int, max_body_mb: float, grpc_port: int | None = None) -> int:
    """Port and body limit checks; returns the body limit in bytes."""
    if not 1 <= port <= 65535:
        raise SalkitError(f"--port {port} is out of range: use 1-65535 (e.g. 8000)")
    if grpc_port is not None and not 1 <= grpc_port <= 65535:
        raise SalkitError(f"--grpc-port {grpc_port} is out of range: use 1-65535 (e.g. 8001)")
    if grpc_port == port:
        raise SalkitError(f"--grpc-port {grpc_port} is the HTTP --port too: give gRPC a port of its own (e.g. {port + 1})")
    if not math.isfinite(max_body_mb) or max_body_mb <= 0 or max_body_mb > MAX_BODY_MB_LIMIT:
        raise SalkitError(f"--max-body-mb {max_body_mb:g} must be in (0, {MAX_BODY_MB_LIMIT:g}] MiB (e.g. 32)")
    return int(max_body_mb * 2**20)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(name="serve")
@click.option("--engine", "bundle", required=True, type=click.Path(path_type=Path), help="Bundle directory written by export-trt.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind, HTTP and gRPC (loopback unless told otherwise).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--grpc-port", default=None, type=int, help="Also serve KServe v2 over gRPC on this port (e.g. 8001).")
@plan_options
@click.option("--max-batch", default=8, show_default=True, type=int, help="Most rows one backend call takes.")
@click.option("--max-delay-ms", default=5.0, show_default=True, type=float, help="How long a request may wait for batch-mates.")
@click.option("--max-body-mb", default=32.0, show_default=True, type=float, help="Larger request bodies get 413 (gRPC: RESOURCE_EXHAUSTED).")
@click.option("--token-file", default=None, type=click.Path(path_type=Path),
              help="Require 'Authorization: Bearer <token>' (gRPC: metadata 'authorization'); not on health checks.")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
@report_user_errors
def serve(
    bundle: Path,
    host: str,
    port: int,
    grpc_port: int | None,
    backend: str,
    precision: str,
    threads: int | None,
    max_batch: int,
    max_delay_ms: float,
    max_body_mb: float,
    token_file: Path | None,
    log_level: str,
) -> None:
    """Serve BUNDLE: KServe v2 (/v2/...; over gRPC too with --grpc-port), POST /predict for image
    files, Prometheus /metrics.

    \b
    Models: coop bundles serve 'saliency' and 'refine', QE-FPN bundles 'qefpn'.
    IMAGE is UINT8 [B,H,W,3] RGB (resized and normalised by the server) or FP32 [B,3,S,S] already
    normalised; see salkit.runtime.server.models for outputs and parameters.
    curl --data-binary @photo.jpg http://127.0.0.1:8000/predict -o map.png
    """
    from salkit.runtime.batching import validate_batching
    from salkit.runtime.bundle import load_bundle
    from salkit.runtime.kinds import kind_of

    max_body_bytes = validate_options(port, max_body_mb, grpc_port)
    validate_batching(max_batch, max_delay_ms)
    if threads is not None and threads < 1:
        raise SalkitError(f"--threads {threads} must be >= 1 (or left out)")
    token = _read_token(token_file) if token_file is not None else None
    if token is None and not _is_loopback(host):
        click.echo(f"warning: serving on {host} without --token-file: anyone who can reach it can use it", err=True)
    manifest = load_bundle(bundle)
    kind_of(manifest)  # a kind this runtime knows, with its graphs: refused here, not in the loader thread

    from salkit.runtime.backends import GPU_BACKENDS
    from salkit.runtime.plan import choose_plan
    from salkit.runtime.predictor import Predictor, probe_predict

    # Chosen here, before the port opens, by the chooser every command uses, and handed to the
    # predictor: the start-up line names the plan that runs (a bad plan ends the start in one line).
    plan = choose_plan(manifest, backend, precision, threads, probe=probe_predict)
    engine_max = manifest.batch.get("max")
    if plan.backend in GPU_BACKENDS and engine_max and max_batch > engine_max:
        raise SalkitError(
            f"--max-batch {max_batch} exceeds the bundle's engine profile (max batch {engine_max}): "
            f"pass --max-batch {engine_max} or less, or re-export with a larger profile"
        )
    grpc_note = f", grpc {host}:{grpc_port}" if grpc_port is not None else ""
    click.echo(f"salkit serve: {manifest.model_kind} bundle {bundle} on http://{host}:{port}{grpc_note}, {plan.line}", err=True)

    def load():
        return Predictor(manifest, threads=threads, plan=plan)

    from salkit.runtime.server.run import run_server

    code = run_server(
        load,
        host=host,
        port=port,
        grpc_port=grpc_port,
        max_batch_size=max_batch,
        max_delay_ms=max_delay_ms,
        max_body_bytes=max_body_bytes,
        token=token,
        log_level=log_level,
    )
    if code:
        sys.exit(code)
