"""The HTTP server: KServe v2 / Open Inference Protocol, ``POST /predict`` and ``/metrics``.

See docs/serving.md. Importing this package imports nothing heavy; the web stack is loaded by
:mod:`salkit.runtime.server.app` and the ``serve`` command when they run.
"""
