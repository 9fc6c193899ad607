"""ASGI middleware in front of every route: metrics, bearer-token auth and the body size limit.

Written as plain ASGI (not Starlette's BaseHTTPMiddleware) so request bodies stream through
untouched and the limit is enforced while reading: a declared ``Content-Length`` over the limit
is refused before any byte is read, and a chunked body is cut off as soon as it passes it.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from starlette.routing import Match

from salkit.runtime.server.prometheus import ServerMetrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PREFIX = "/v2/health/"
PAGE_PATH = "/"  # salkit.runtime.server.page


def _public(scope: Scope) -> bool:
    """Health checks, and the HTML of the page at ``GET /``: a browser opening a URL cannot send
    a bearer token, and the page holds nothing about the model. Its data (``/?format=json``) and
    every API route it calls keep the token."""
    if scope["path"].startswith(PUBLIC_PREFIX):
        return True
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return scope["path"] == PAGE_PATH and scope["method"] in ("GET", "HEAD") and "format" not in query


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a request body passes the limit (the app answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the server's limit of {limit} bytes ({limit / 2**20:g} MiB)")
        self.limit = limit


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Auth + body limit (inner) wrapped by metrics (outer), as one middleware."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, max_body_bytes: int, token: str | None, routes: list[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.token = token.encode() if token else None
        self.routes = routes

    def _route_label(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # refused before routing: match it ourselves for the label
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", None) or "unmatched"

    def _authorised(self, scope: Scope) -> bool:
        if self.token is None or _public(scope):
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        self.metrics.in_flight.inc()

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_recording)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe_request(self._route_label(scope), scope["method"], status, time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorised(scope):
            await send_error(send, 401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')", [(b"www-authenticate", b"Bearer")])
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, f"Content-Length {value.decode(errors='replace')!r} is not a number")
                    return
                if declared > self.max_body_bytes:
                    await send_error(send, 413, str(BodyTooLarge(self.max_body_bytes)))
                    return
        received = 0
        limit = self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, receive_limited, send)
