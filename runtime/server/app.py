"""The Starlette application: KServe v2 routes, ``/predict``, ``/metrics``, load and warm-up.

``create_app(load, ...)`` returns an ASGI app. On start-up it loads the predictor in a thread
(``load()`` → ``Predictor``), warms it with one call per model and only then reports ready;
until then ``/v2/health/ready`` and every model route answer 503. On shutdown it drains the
batcher (requests already accepted finish) and closes the predictor.

Request flow of ``POST /v2/models/{model}/infer``: read the body (size-limited by the guard,
gzip/deflate ``Content-Encoding`` inflated up to the same limit) → parse the v2 request (JSON
and binary tensors) → validate and preprocess in a worker thread → the shared dynamic batcher →
resize maps back → encode (JSON or binary, as the client asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import zlib
from typing import Any, Callable

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from salkit.kernels.errors import SalkitError
from salkit.runtime.batching import BatcherClosedError, QueueFullError, validate_batching
from salkit.runtime.batching_predictor import BatchingPredictor
from salkit.runtime.server.guard import BodyTooLarge, Guard
from salkit.runtime.server.metrics import ServerMetrics
from salkit.runtime.server.models import ServedModel, models_for
from salkit.runtime.server.protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request
from salkit.runtime.server.simple import predict_route

log = logging.getLogger("salkit.server")

SERVER_NAME = "salkit"
MODEL_VERSION = "1"
EXTENSIONS = ["binary_tensor_data"]


def _salkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("salkit")
    except PackageNotFoundError:
        return "unknown"


class ServerState:
    """The loaded predictor, its batcher and models, and whether they are ready."""

    def __init__(
        self,
        load: Callable[[], Any],
        *,
        max_batch_size: int,
        max_delay_ms: float,
        max_queue: int | None,
        metrics: ServerMetrics,
        on_fatal: Callable[[BaseException], None] | None,
    ) -> None:
        self.load = load
        self.max_batch_size, self.max_delay_ms = max_batch_size, max_delay_ms
        self.max_queue = max_queue
        self.metrics = metrics
        self.on_fatal = on_fatal
        self.predictor: Any = None
        self.batching: BatchingPredictor | None = None
        self.models: dict[str, ServedModel] = {}
        self.ready = threading.Event()
        self.failure: str | None = None
        self._loader: threading.Thread | None = None

    def start(self) -> None:
        self._loader = threading.Thread(target=self._load_and_warm, name="salkit-loader", daemon=True)
        self._loader.start()

    def _load_and_warm(self) -> None:
        try:
            predictor = self.load()
            self.predictor = predictor
            size = predictor.manifest.input_size
            zeros = np.zeros((1, 3, size, size), dtype=np.float32)
            predictor.predict_tensor(zeros)  # warm-up: first runs allocate and compile
            if predictor.manifest.model_kind == "coop":
                predictor.refine_tensor(zeros, np.full((1, 1, size, size), 0.5, dtype=np.float32))
            self.batching = BatchingPredictor(
                predictor,
                max_batch_size=self.max_batch_size,
                max_delay_ms=self.max_delay_ms,
                max_queue=self.max_queue,
                on_batch=self.metrics.on_batch,
                on_queue_depth=self.metrics.on_queue_depth,
            )
            self.models = models_for(self.batching)
        except BaseException as err:  # noqa: BLE001 — reported through /v2/health/ready and on_fatal
            self.failure = f"{type(err).__name__}: {err}" if not isinstance(err, SalkitError) else str(err)
            log.error("loading the model failed: %s", self.failure, exc_info=not isinstance(err, SalkitError))
            if self.on_fatal is not None:
                self.on_fatal(err)
            return
        self.ready.set()
        log.info("model ready: %s (%s backend), serving %s", predictor.manifest.model_name, predictor.backend_name, ", ".join(self.models))

    def stop(self) -> None:
        if self._loader is not None:
            self._loader.join(60)
        if self.batching is not None:
            self.batching.close(drain=True, timeout=60)
        if self.predictor is not None and hasattr(self.predictor, "close"):
            self.predictor.close()

    def not_ready_reason(self) -> str:
        return f"model failed to load: {self.failure}" if self.failure else "model is loading"

    def model(self, name: str, version: str | None = None) -> ServedModel:
        if not self.ready.is_set():
            raise ProtocolError(self.not_ready_reason(), status=503)
        if name not in self.models:
            raise ProtocolError(f"unknown model {name!r} (this server has: {', '.join(self.models)})", status=404)
        if version is not None and version != MODEL_VERSION:
            raise ProtocolError(f"model {name!r} has no version {version!r} (versions: {MODEL_VERSION})", status=404)
        return self.models[name]


# Bodies up to this size are parsed, preprocessed and encoded on the event loop (tens of µs);
# larger ones go to a worker thread so one big image cannot stall every other connection.
INLINE_BYTES = 64 * 1024


async def _on_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _protocol_error(request: Request, exc: Exception) -> Response:
    return _error(getattr(exc, "status", 400), str(exc))


async def _too_large(request: Request, exc: Exception) -> Response:
    return _error(413, str(exc))


async def _busy(request: Request, exc: Exception) -> Response:
    return _error(503, str(exc))


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, f"internal error: {type(exc).__name__}")


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a request's gzip/deflate Content-Encoding without letting it grow past ``limit``."""
    if not encoding or encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.strip().lower())
    if wbits is None:
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r} (use gzip, deflate or none)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise ProtocolError(f"body is not valid {encoding} data: {err}") from None
    if len(out) > limit:
        raise BodyTooLarge(limit)
    if not inflater.eof:
        raise ProtocolError(f"{encoding} body is truncated")
    return out


def create_app(
    load: Callable[[], Any],
    *,
    max_batch_size: int = 8,
    max_delay_ms: float = 5.0,
    max_body_bytes: int = 32 << 20,
    token: str | None = None,
    max_queue: int | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
    metrics: ServerMetrics | None = None,
) -> Starlette:
    """Build the server app; ``load`` returns a Predictor (called once, in a thread, at start-up)."""
    validate_batching(max_batch_size, max_delay_ms, max_queue)
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise SalkitError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    metrics = metrics or ServerMetrics()
    state = ServerState(
        load, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, max_queue=max_queue, metrics=metrics, on_fatal=on_fatal
    )

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": SERVER_NAME, "version": _salkit_version(), "extensions": EXTENSIONS})

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        if state.ready.is_set():
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": state.not_ready_reason()}, status_code=503)

    async def model_metadata(request: Request) -> Response:
        model = state.model(request.path_params["model"], request.path_params.get("version"))
        return JSONResponse(model.metadata())

    async def model_ready(request: Request) -> Response:
        state.model(request.path_params["model"], request.path_params.get("version"))
        return JSONResponse({"name": request.path_params["model"], "ready": True})

    async def model_config(request: Request) -> Response:
        model = state.model(request.path_params["model"], request.path_params.get("version"))
        meta = model.metadata()
        return JSONResponse(
            {
                "name": model.name,
                "platform": meta["platform"],
                "max_batch_size": max_batch_size,
                "dynamic_batching": {"max_queue_delay_microseconds": int(max_delay_ms * 1000)},
                "input": meta["inputs"],
                "output": meta["outputs"],
            }
        )

    async def infer(request: Request) -> Response:
        model = state.model(request.path_params["model"], request.path_params.get("version"))
        body = inflate(await request.body(), request.headers.get("content-encoding"), max_body_bytes)
        # Small requests are cheaper to handle on the loop than to hand to a thread and back.
        offload = _off_loop if len(body) > INLINE_BYTES else _on_loop
        parsed = await offload(parse_infer_request, body, request.headers.get(HEADER_LENGTH))
        wanted = model.check_request(parsed)
        prepared = await offload(model.prepare, parsed)
        outputs = await model.infer(parsed, prepared, wanted)
        content, header_length = await offload(encode_infer_response, model.name, MODEL_VERSION, parsed, outputs)
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})

    async def predict(request: Request) -> Response:
        if not state.ready.is_set():
            raise ProtocolError(state.not_ready_reason(), status=503)
        return await predict_route(request, state.models)

    async def prometheus(request: Request) -> Response:
        if state.batching is not None:
            metrics.on_queue_depth(state.batching.batcher.queue_depth)
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    model_paths = ["/v2/models/{model}", "/v2/models/{model}/versions/{version}"]
    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *[Route(p, model_metadata, methods=["GET"]) for p in model_paths],
        *[Route(p + "/ready", model_ready, methods=["GET"]) for p in model_paths],
        *[Route(p + "/config", model_config, methods=["GET"]) for p in model_paths],
        *[Route(p + "/infer", infer, methods=["POST"]) for p in model_paths],
        Route("/predict", predict, methods=["POST"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        state.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.stop)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(getattr(exc, "status_code", 404), f"no route {request.method} {request.url.path}")

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            404: not_found,
            405: not_found,
            ProtocolError: _protocol_error,
            SalkitError: _protocol_error,
            BodyTooLarge: _too_large,
            QueueFullError: _busy,
            BatcherClosedError: _busy,
            Exception: _internal,
        },
    )
    app.state.salkit = state
    app.add_middleware(Guard, metrics=metrics, max_body_bytes=max_body_bytes, token=token, routes=routes)
    return app
