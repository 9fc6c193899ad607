"""Prometheus metrics for the server, on a registry of its own (several apps can share a process).

Exposed at ``GET /metrics``:

* ``salkit_http_requests_total{route, method, status}`` — route is the path template
  (``/v2/models/{model}/infer``), so the label set stays small whatever clients send;
* ``salkit_http_request_duration_seconds{route}`` — latency histogram;
* ``salkit_batch_size`` — rows per backend call (the dynamic batcher at work);
* ``salkit_batch_duration_seconds`` — time inside the backend per call;
* ``salkit_queue_depth`` — rows waiting for the batcher;
* ``salkit_http_requests_in_flight``;
* ``salkit_grpc_requests_total{method, code}``, ``salkit_grpc_request_duration_seconds{method}``
  and ``salkit_grpc_requests_in_flight`` — the same for gRPC calls (method: ``ModelInfer``, …; code: ``OK``, ``INVALID_ARGUMENT``, …;
  calls refused by gRPC itself, e.g. over the size cap, never reach the servicer and are not counted).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from salkit.runtime.batching import BatchStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "salkit_http_requests", "HTTP requests by route template, method and status", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "salkit_http_request_duration_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.in_flight = Gauge("salkit_http_requests_in_flight", "HTTP requests being served", registry=self.registry)
        self.batch_size = Histogram("salkit_batch_size", "Rows per backend call", buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram(
            "salkit_batch_duration_seconds", "Backend time per batched call", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("salkit_queue_depth", "Rows waiting for the dynamic batcher", registry=self.registry)
        self.grpc_requests = Counter(
            "salkit_grpc_requests", "gRPC calls by method and status code", ["method", "code"], registry=self.registry
        )
        self.grpc_in_flight = Gauge("salkit_grpc_requests_in_flight", "gRPC calls being served", registry=self.registry)
        self.grpc_latency = Histogram(
            "salkit_grpc_request_duration_seconds", "gRPC call latency", ["method"], buckets=_LATENCY_BUCKETS, registry=self.registry
        )

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.size)
        self.batch_seconds.observe(stats.run_seconds)

    def on_queue_depth(self, rows: int) -> None:
        self.queue_depth.set(rows)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        self.grpc_requests.labels(method=method, code=code).inc()
        self.grpc_latency.labels(method=method).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
