"""The server: KServe v2 / Open Inference Protocol over HTTP (and gRPC with ``--grpc-port``),
``POST /predict``, ``/metrics``, model configuration and statistics in Triton's schema.

See docs/serving.md. Importing this package imports nothing heavy; the web stack is loaded by
:mod:`salkit.runtime.server.app` and the ``serve`` command when they run, gRPC by
:mod:`salkit.runtime.server.grpc_server` only when a gRPC port is given.
"""
