"""KServe v2 over gRPC: the ``GRPCInferenceService`` on the server's own models and batcher.

The listener is a ``grpc.aio`` server on the same event loop as the HTTP app (started and stopped
by the app's lifespan), so both protocols share the loaded predictor, the dynamic batcher, the
statistics and the limits:

* bearer token: metadata ``authorization: Bearer <token>`` on every call except ServerLive and
  ServerReady (as HTTP exempts ``/v2/health/*``); missing or wrong → UNAUTHENTICATED;
* size cap: the channel's max receive message size is the HTTP body limit; a larger message is
  refused by gRPC itself with RESOURCE_EXHAUSTED before it reaches the servicer;
* errors: one line each — INVALID_ARGUMENT (malformed request), NOT_FOUND (unknown model or
  version), UNAVAILABLE (loading, queue full, shutting down), INTERNAL (a bug, logged).

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig,
ModelStatistics, ModelInfer. The repository, shared-memory, trace, logging and streaming calls
answer UNIMPLEMENTED (the generated base class). ModelReady answers ``ready: false`` for a model
that is unknown or still loading, as Triton does.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from typing import Any, Awaitable, Callable

import grpc
from grpc import aio
from tritonclient.grpc import service_pb2, service_pb2_grpc

from salkit.base.errors import SalkitError
from salkit.runtime.batching import BatcherClosedError, QueueFullError
from salkit.runtime.server import grpc_protocol
from salkit.runtime.server.pipeline import run_inference
from salkit.runtime.server.protocol import ProtocolError

log = logging.getLogger("salkit.server")

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
TOKEN_HINT = "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')"


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _status(err: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and one-line message a failed call answers with."""
    if isinstance(err, ProtocolError):
        return _CODES.get(err.status, grpc.StatusCode.INVALID_ARGUMENT), str(err)
    if isinstance(err, (QueueFullError, BatcherClosedError)):
        return grpc.StatusCode.UNAVAILABLE, str(err)
    if isinstance(err, SalkitError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(err)
    log.error("internal error in a gRPC call", exc_info=err)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}"


Handler = Callable[[Any, Any, Any], Awaitable[Any]]


def _rpc(public: bool = False) -> Callable[[Handler], Handler]:
    """Wrap a servicer method: token check, error → status, per-call metrics."""

    def wrap(method: Handler) -> Handler:
        @functools.wraps(method)
        async def call(self: "InferenceServicer", request: Any, context: aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            self.state.metrics.grpc_in_flight.inc()
            try:
                if not public and not self.authorised(context):
                    code, message = grpc.StatusCode.UNAUTHENTICATED, TOKEN_HINT
                else:
                    try:
                        return await method(self, request, context)
                    except asyncio.CancelledError:
                        code = grpc.StatusCode.CANCELLED
                        raise
                    except Exception as err:
                        code, message = _status(err)
                await context.abort(code, _one_line(message))
            finally:
                self.state.metrics.grpc_in_flight.dec()
                self.observe(method.__name__, code, time.perf_counter() - start)

        return call

    return wrap


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The v2 gRPC calls on a :class:`salkit.runtime.server.app.ServerState`."""

    def __init__(self, state: Any, *, token: str | None, server_metadata: Callable[[], dict[str, Any]]) -> None:
        self.state = state
        self.token = token.encode() if token else None
        self.server_metadata = server_metadata

    def authorised(self, context: aio.ServicerContext) -> bool:
        if self.token is None:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                raw = value.encode() if isinstance(value, str) else value
                scheme, _, credential = raw.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)
        return False

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.state.metrics.observe_grpc(method, code.name, seconds)

    @_rpc(public=True)
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    @_rpc(public=True)
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.state.ready.is_set())

    @_rpc()
    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            self.state.model(request.name, request.version or None)
        except ProtocolError:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    @_rpc()
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(**self.server_metadata())

    @_rpc()
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        model = self.state.model(request.name, request.version or None)
        return grpc_protocol.model_metadata(model.metadata())

    @_rpc()
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        model = self.state.model(request.name, request.version or None)
        return grpc_protocol.model_config(self.state.config(model))

    @_rpc()
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        if not request.name:
            return grpc_protocol.model_statistics(self.state.stats.to_json())
        model = self.state.model(request.name, request.version or None)
        return grpc_protocol.model_statistics(self.state.stats.to_json(model.name))

    @_rpc()
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        model = self.state.model(request.model_name, request.model_version or None)
        return await run_inference(
            model,
            self.state.stats,
            request.ByteSize(),
            lambda: grpc_protocol.decode_infer_request(request),
            lambda parsed, outputs: grpc_protocol.encode_infer_response(model.name, self.state.model_version, parsed, outputs),
        )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcListener:
    """A started ``grpc.aio`` server; :meth:`begin_stop` closes it to new calls and drains."""

    def __init__(self, servicer: InferenceServicer, *, host: str, port: int, max_receive_bytes: int) -> None:
        options = [
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a port another server holds is an error, not shared
        ]
        self.server = aio.server(options=options)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self.server)
        self.host, self.requested_port = host, port
        self.port: int | None = None
        self._stopping: asyncio.Task | None = None

    async def start(self) -> int:
        address = _address(self.host, self.requested_port)
        try:
            port = self.server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            raise SalkitError(f"cannot listen for gRPC on {address}: the port is taken or the address is not this machine's "
                              "(pick another --grpc-port)")
        await self.server.start()
        self.port = port
        log.info("gRPC (KServe v2) on %s", _address(self.host, port))
        return port

    def begin_stop(self, grace: float) -> asyncio.Task:
        """Refuse new calls now; calls in flight get ``grace`` seconds. Idempotent; call on the loop."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self.server.stop(grace))
        return self._stopping

    async def stop(self, grace: float) -> None:
        await self.begin_stop(grace)
