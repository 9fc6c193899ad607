"""Backend registry: names → runner classes, availability, and the ``auto`` choice.

=========== ================================================ ==============================
name        what runs the graphs                             needs
=========== ================================================ ==============================
tensorrt    native TensorRT engines (``.plan``)              tensorrt, cuda-python, a GPU,
                                                             engines in the bundle
ort-trt     onnxruntime-gpu, TensorRT execution provider     onnxruntime-gpu, a GPU
ort-cuda    onnxruntime-gpu, CUDA execution provider         onnxruntime-gpu, a GPU
ort-cpu     ONNX Runtime on the CPU (the embedded default)   onnxruntime
openvino    OpenVINO's CPU plugin (fp32, bf16, int8 graphs)  openvino (``salkit[openvino]``)
=========== ================================================ ==============================

Which backend and precision run is chosen in one place, :func:`salkit.runtime.plan.choose_plan`
(``auto``: a GPU backend in that order, else it measures the CPU backends and precisions the
bundle allows). Runner modules are imported only when a runner is created, so importing this
package loads neither onnxruntime, OpenVINO nor TensorRT.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from salkit.base.errors import SalkitError
from salkit.runtime.backends.base import HOST, Device, Runner
from salkit.runtime.bundle import Manifest

BACKENDS: dict[str, str] = {
    "tensorrt": "salkit.runtime.backends.trt:TrtRunner",
    "ort-trt": "salkit.runtime.backends.ort:OrtTrtRunner",
    "ort-cuda": "salkit.runtime.backends.ort:OrtCudaRunner",
    "ort-cpu": "salkit.runtime.backends.ort:OrtRunner",
    "openvino": "salkit.runtime.backends.openvino:OpenVinoRunner",
}
CHOICES = ("auto", *BACKENDS)
GPU_BACKENDS = frozenset({"tensorrt", "ort-trt", "ort-cuda"})
CPU_BACKENDS = ("ort-cpu", "openvino")


def runner_class(name: str) -> type[Runner]:
    if name not in BACKENDS:
        raise SalkitError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _cuda_device_count() -> int:
    """GPUs visible through the CUDA runtime (0 when cuda-python or a driver is missing)."""
    if importlib.util.find_spec("cuda") is None:
        return 0
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        return int(count) if int(err) == 0 else 0
    except Exception:  # no driver, no device, or an older cuda-python layout: no GPU for us
        return 0


def availability(manifest: Manifest | None = None) -> dict[str, str]:
    """Backend name → "" if usable here, else the reason it is not."""
    from salkit.runtime.backends.ort import available_providers

    providers = available_providers()
    gpus = _cuda_device_count()
    reasons: dict[str, str] = {}
    no_gpu = "" if gpus else "no CUDA GPU visible"
    trt_missing = "" if importlib.util.find_spec("tensorrt") else "the tensorrt package is not installed"
    engines = ""
    if manifest is not None and manifest.engines.get("status") != "built":
        engines = f"the bundle has no TensorRT engines ({manifest.engines.get('reason') or 'not built'})"
    reasons["tensorrt"] = no_gpu or trt_missing or engines
    reasons["ort-trt"] = no_gpu or ("" if "TensorrtExecutionProvider" in providers else "onnxruntime has no TensorRT provider")
    reasons["ort-cuda"] = no_gpu or ("" if "CUDAExecutionProvider" in providers else "onnxruntime has no CUDA provider")
    reasons["ort-cpu"] = "" if "CPUExecutionProvider" in providers else "onnxruntime is not installed"
    reasons["openvino"] = "" if importlib.util.find_spec("openvino") else "the openvino package is not installed (pip install 'salkit[openvino]')"
    return reasons


def device_for(backend: str) -> Device:
    """The device a backend's loop buffers live on: a CUDA device when cupy is present, else the host."""
    if backend not in GPU_BACKENDS:
        return HOST
    from salkit.runtime.backends.cuda_device import cuda_device_or_host

    return cuda_device_or_host()


def create_runner(
    backend: str, manifest: Manifest, graph: str, *, threads: int | None = None, device: Device | None = None, precision: str = "fp32",
    shares_cores: bool = False,
) -> Runner:
    """A (not yet loaded) runner for one graph of a bundle at ``precision``.

    The precision picks the file (the bundle's ``variants[precision][graph]`` when it has one,
    else the fp32 graph) and, for OpenVINO, the inference precision (see salkit.runtime.precision).
    A variant file's SHA-256 is checked here against the manifest. ``shares_cores``: other graphs of
    the same loop run on another engine's threads, so ONNX Runtime's CPU threads must not spin
    between runs (:class:`~salkit.runtime.backends.ort.OrtRunner`'s ``spin``).
    """
    from salkit.runtime.precision import backend_precisions, graph_file, verify_file

    cls = runner_class(backend)
    spec = manifest.graphs.get(graph)
    if spec is None:
        raise SalkitError(f"bundle {manifest.root} has no graph {graph!r} (it has: {', '.join(sorted(manifest.graphs))})")
    if precision not in backend_precisions(backend):
        raise SalkitError(f"backend {backend} has no {precision!r} precision (it runs {', '.join(backend_precisions(backend))})")
    options: dict[str, Any] = {"graph": graph, "device": device}
    if backend == "openvino":
        options["precision"] = precision
    if backend == "ort-cpu" and shares_cores:
        options["spin"] = False
    if precision != "fp32":
        path, sha = graph_file(manifest, graph, precision)
        verify_file(path, sha, f"bundle {manifest.root}: {precision} graph {graph!r}")
        return cls(path, spec, threads=threads, **options)
    if backend == "tensorrt":
        files = manifest.engines.get("files", {})
        if graph not in files:
            raise SalkitError(f"bundle {manifest.root} has no TensorRT engine for graph {graph!r}")
        path = Path(manifest.root or ".") / files[graph]["file"]
        return cls(path, spec, sha256=files[graph].get("sha256"), **options)
    return cls(manifest.graph_path(graph), spec, threads=threads, **options)


__all__ = ["BACKENDS", "CHOICES", "CPU_BACKENDS", "GPU_BACKENDS", "availability", "create_runner", "device_for", "runner_class"]
