"""Run the app under uvicorn with graceful shutdown and the project's exit codes.

SIGTERM or SIGINT: uvicorn stops accepting connections and the gRPC listener (``grpc_port``)
stops accepting calls at the same moment; in-flight requests and calls on both finish (up to
``graceful_seconds``), then the app drains its batcher and closes the predictor; the process
exits 0. uvicorn re-raises the captured signal once it has shut down, which would kill the
process with the signal's default action; a no-op handler installed first turns that into a
normal return. A predictor that fails to load stops the server: a user error (bad bundle, no
usable backend) is re-raised as :class:`SalkitError` (one line, exit 2), anything else exits 1.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Callable

from salkit.base.errors import SalkitError

log = logging.getLogger("salkit.server")


def _ignore(signum: int, frame: object) -> None:
    """Installed under uvicorn's own handlers; absorbs the signal it re-raises after shutdown."""


def run_server(
    load: Callable[[], Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    grpc_port: int | None = None,
    max_batch_size: int = 8,
    max_delay_ms: float = 5.0,
    max_body_bytes: int = 32 << 20,
    token: str | None = None,
    log_level: str = "info",
    graceful_seconds: float = 30.0,
) -> int:
    """Serve until a signal arrives; returns the process exit code."""
    import uvicorn

    from salkit.runtime.server.app import create_app

    fatal: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(err: BaseException) -> None:
        fatal.append(err)
        if server is not None:
            server.should_exit = True

    app = create_app(
        load,
        max_batch_size=max_batch_size,
        max_delay_ms=max_delay_ms,
        max_body_bytes=max_body_bytes,
        token=token,
        on_fatal=on_fatal,
        grpc_port=grpc_port,
        grpc_host=host,
        grace_seconds=graceful_seconds,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=int(graceful_seconds),
    )
    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            listener = app.state.salkit_grpc
            if listener is not None:  # close both listeners together; the lifespan awaits the drain
                listener.begin_stop(graceful_seconds)
            await super().shutdown(sockets)

    server = Server(config)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore)
    server.run()
    if fatal:
        err = fatal[0]
        if isinstance(err, SalkitError):
            raise err
        log.error("the server stopped because the model failed to load: %s: %s", type(err).__name__, err)
        return 1
    return 0
