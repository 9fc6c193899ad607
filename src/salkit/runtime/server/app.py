"""The Starlette application: KServe v2 routes, ``/predict``, ``/metrics``, the page at ``GET /``
(salkit.runtime.server.page), load and warm-up.

``create_app(load, ...)`` returns an ASGI app. On start-up it starts the gRPC listener when a
``grpc_port`` is given (salkit.runtime.server.grpc_server, same models and batcher), loads the
predictor in a thread (``load()`` → ``Predictor``), warms it with one call per model and only then
reports ready; until then ``/v2/health/ready`` and every model route answer 503 (gRPC:
UNAVAILABLE). On shutdown it stops the gRPC listener (calls in flight finish), drains the batcher
(requests already accepted finish) and closes the predictor.

Request flow of ``POST /v2/models/{model}/infer``: read the body (size-limited by the guard,
gzip/deflate ``Content-Encoding`` inflated up to the same limit) → parse the v2 request (JSON
and binary tensors) → validate and preprocess → the shared dynamic batcher → resize maps back →
encode (JSON or binary, as the client asked); salkit.runtime.server.pipeline, traced for the
model's statistics. ``/config`` and ``/stats`` answer in Triton's schema (model_config, stats).
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

from salkit.base.errors import SalkitError
from salkit.runtime.batching import BatcherClosedError, BatchStats, QueueFullError, validate_batching
from salkit.runtime.batching_predictor import BatchingPredictor
from salkit.runtime.kinds import get_kind
from salkit.runtime.server import model_config
from salkit.runtime.server.guard import PAGE_PATH, BodyTooLarge, Guard
from salkit.runtime.server.models import ServedModel, models_for
from salkit.runtime.server.page import page_info, page_route
from salkit.runtime.server.pipeline import run_inference
from salkit.runtime.server.prometheus import ServerMetrics
from salkit.runtime.server.protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request
from salkit.runtime.server.simple import predict_route
from salkit.runtime.server.stats import ServerStats

log = logging.getLogger("salkit.server")

SERVER_NAME = "salkit"
MODEL_VERSION = "1"
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "parameters"]


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
        self.stats = ServerStats(MODEL_VERSION)
        self.model_version = MODEL_VERSION
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
            if get_kind(predictor.manifest.model_kind).refines:
                predictor.refine_tensor(zeros, np.full((1, 1, size, size), 0.5, dtype=np.float32))
            self.batching = BatchingPredictor(
                predictor,
                max_batch_size=self.max_batch_size,
                max_delay_ms=self.max_delay_ms,
                max_queue=self.max_queue,
                on_batch=self._on_batch,
                on_queue_depth=self.metrics.on_queue_depth,
            )
            models = models_for(self.batching)
            for model in models.values():
                self.stats.register(model.name, model.op)
            self.models = models
        except BaseException as err:
            self.failure = f"{type(err).__name__}: {err}" if not isinstance(err, SalkitError) else str(err)
            log.error("loading the model failed: %s", self.failure, exc_info=not isinstance(err, SalkitError))
            if self.on_fatal is not None:
                self.on_fatal(err)
            return
        self.ready.set()
        plan = getattr(predictor, "plan", predictor.backend_name)  # "backend:precision"; stand-ins may name a backend only
        log.info("model ready: %s (plan %s), serving %s", predictor.manifest.model_name, plan, ", ".join(self.models))

    def _on_batch(self, stats: BatchStats) -> None:
        self.metrics.on_batch(stats)
        self.stats.on_batch(stats)

    def config(self, model: ServedModel) -> dict[str, Any]:
        """The model's configuration in Triton's schema (salkit.runtime.server.model_config)."""
        from salkit.runtime.backends import GPU_BACKENDS

        backend = str(getattr(self.predictor, "backend_name", "unknown"))
        assert self.batching is not None  # a model exists only once the batcher does
        return model_config.model_config(
            model.name,
            model.manifest,
            backend_name=backend,
            gpu=backend in GPU_BACKENDS,
            max_batch_size=self.max_batch_size,
            max_delay_ms=self.max_delay_ms,
            max_queue=self.batching.batcher.max_queue,
        )

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
    grpc_port: int | None = None,
    grpc_host: str = "127.0.0.1",
    grace_seconds: float = 30.0,
) -> Starlette:
    """Build the server app; ``load`` returns a Predictor (called once, in a thread, at start-up).

    With ``grpc_port`` (0: any free port) the lifespan also serves KServe v2 over gRPC on
    ``grpc_host``; ``app.state.salkit_grpc`` is then the :class:`GrpcListener` (its ``port`` is the
    bound one). ``grace_seconds``: how long gRPC calls in flight may take to finish on shutdown.
    """
    validate_batching(max_batch_size, max_delay_ms, max_queue)
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise SalkitError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    metrics = metrics or ServerMetrics()
    state = ServerState(
        load, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, max_queue=max_queue, metrics=metrics, on_fatal=on_fatal
    )

    def server_info() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": _salkit_version(), "extensions": EXTENSIONS}

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(server_info())

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

    async def config(request: Request) -> Response:
        model = state.model(request.path_params["model"], request.path_params.get("version"))
        return JSONResponse(state.config(model))

    async def statistics(request: Request) -> Response:
        if "model" not in request.path_params:  # /v2/models/stats: every model
            return JSONResponse(state.stats.to_json())
        model = state.model(request.path_params["model"], request.path_params.get("version"))
        return JSONResponse(state.stats.to_json(model.name))

    async def infer(request: Request) -> Response:
        model = state.model(request.path_params["model"], request.path_params.get("version"))
        body = inflate(await request.body(), request.headers.get("content-encoding"), max_body_bytes)
        content, header_length = await run_inference(
            model,
            state.stats,
            len(body),
            lambda: parse_infer_request(body, request.headers.get(HEADER_LENGTH)),
            lambda parsed, outputs: encode_infer_response(model.name, MODEL_VERSION, parsed, outputs),
        )
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})

    async def predict(request: Request) -> Response:
        if not state.ready.is_set():
            raise ProtocolError(state.not_ready_reason(), status=503)
        return await predict_route(request, state.models, state.stats)

    def page_data() -> dict[str, Any]:
        if not state.ready.is_set():
            raise ProtocolError(state.not_ready_reason(), status=503)
        return page_info(state.predictor, list(state.models), max_body_bytes)

    async def page(request: Request) -> Response:
        return await page_route(request, page_data)

    async def prometheus(request: Request) -> Response:
        if state.batching is not None:
            metrics.on_queue_depth(state.batching.batcher.queue_depth)
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    model_paths = ["/v2/models/{model}", "/v2/models/{model}/versions/{version}"]
    routes = [
        Route("/v2/models/stats", statistics, methods=["GET"]),  # before /v2/models/{model}
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *[Route(p, model_metadata, methods=["GET"]) for p in model_paths],
        *[Route(p + "/ready", model_ready, methods=["GET"]) for p in model_paths],
        *[Route(p + "/config", config, methods=["GET"]) for p in model_paths],
        *[Route(p + "/stats", statistics, methods=["GET"]) for p in model_paths],
        *[Route(p + "/infer", infer, methods=["POST"]) for p in model_paths],
        Route("/predict", predict, methods=["POST"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route(PAGE_PATH, page, methods=["GET"]),  # the page to try it in a browser
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        listener = None
        if grpc_port is not None:
            from salkit.runtime.server.grpc_server import GrpcListener, InferenceServicer

            servicer = InferenceServicer(state, token=token, server_metadata=server_info)
            listener = GrpcListener(servicer, host=grpc_host, port=grpc_port, max_receive_bytes=max_body_bytes)
            try:
                await listener.start()
                app.state.salkit_grpc = listener
            except SalkitError as err:  # e.g. the port is taken
                if on_fatal is None:
                    raise
                on_fatal(err)  # the runner stops the server and reports it: one line, exit 2
                listener = None
        if listener is not None or grpc_port is None:
            state.start()
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop(grace_seconds)
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
    app.state.salkit_grpc = None
    app.add_middleware(Guard, metrics=metrics, max_body_bytes=max_body_bytes, token=token, routes=routes)
    return app
