"""ONNX Runtime runners: ``ort-cpu`` (the embedded default), ``ort-cuda`` and ``ort-trt``.

All three bind buffers with IO binding, so a run reads its inputs from and writes its outputs
into buffers the loop allocated once: on the CPU the numpy arrays themselves, on a GPU device
arrays (``cuda`` device pointers), so a loop never copies through the host. ``onnxruntime`` is
imported when a runner loads, not when this module is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.backends.base import Array, Runner
from salkit.runtime.bundle import DYNAMIC, GraphSpec, TensorSpec

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:  # pragma: no cover - onnxruntime is a core dependency
        raise SalkitError(f"onnxruntime is not installed ({err}); pip install onnxruntime") from None
    return onnxruntime


def available_providers() -> list[str]:
    try:
        return list(_import_ort().get_available_providers())
    except SalkitError:
        return []


def _spec(arg: Any) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise SalkitError(f"tensor {arg.name!r} has type {arg.type}, which the runtime does not handle")
    dims = tuple(int(d) if isinstance(d, int) and d >= 0 else DYNAMIC for d in arg.shape)
    return TensorSpec(arg.name, dims, dtype)


class OrtRunner(Runner):
    """ONNX Runtime on the CPU: graph optimisation level ALL, configurable intra-op threads."""

    backend = "ort-cpu"

    def __init__(
        self, path: str | Path, spec: GraphSpec | None = None, *, provider_options: dict[str, Any] | None = None,
        spin: bool = True, **common: Any
    ) -> None:
        """``common``: the :class:`Runner`'s ``graph``, ``threads`` and ``device``. ``spin=False``: the
        intra-op threads sleep as soon as a run ends instead of busy-waiting for the next one, for a
        plan whose other graphs run on another engine's threads on the same cores (measured on the real
        Lite0 coop bundle, AMD EPYC, 2 cores: the encoder on ONNX Runtime and the rest on OpenVINO took
        68 ms a predict with spinning, the latent decoder at 46 ms instead of its 24 alone)."""
        super().__init__(path, spec, **common)
        self.provider_options = provider_options or {}
        self.spin = spin
        self.session: Any = None

    def _providers(self) -> list[Any]:
        return ["CPUExecutionProvider"]

    def _session_options(self) -> Any:
        ort = _import_ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads or 0  # 0: one per physical core
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT's warnings are about its own internals
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def _load(self) -> None:
        ort = _import_ort()
        missing = [p if isinstance(p, str) else p[0] for p in self._providers()]
        missing = [p for p in missing if p not in ort.get_available_providers()]
        if missing:
            raise SalkitError(
                f"backend {self.backend} needs ONNX Runtime providers {missing}; this onnxruntime has "
                f"{ort.get_available_providers()} (install onnxruntime-gpu for CUDA/TensorRT)"
            )
        try:
            self.session = ort.InferenceSession(str(self.path), self._session_options(), providers=self._providers())
        except Exception as err:  # ORT raises its own exception types for unreadable graphs
            raise SalkitError(f"graph {self.graph!r}: ONNX Runtime cannot load {self.path}: {err}") from None

    def _describe(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        return (
            tuple(_spec(a) for a in self.session.get_inputs()),
            tuple(_spec(a) for a in self.session.get_outputs()),
        )

    def _pointer(self, array: Array) -> int:
        if self.device.is_host:
            if not (isinstance(array, np.ndarray) and array.flags.c_contiguous):
                raise SalkitError(f"graph {self.graph!r}: buffers must be C-contiguous numpy arrays")
            return int(array.ctypes.data)
        return int(array.data.ptr)  # cupy-style device array

    def _bind(self, inputs: dict[str, Array], outputs: dict[str, Array]) -> Any:
        binding = self.session.io_binding()
        device_id = 0 if self.device.is_host else int(getattr(self.device, "device_id", 0))
        for name, buf in inputs.items():
            binding.bind_input(name, self.device_type_of_buffers, device_id, np.dtype(buf.dtype).type, tuple(buf.shape), self._pointer(buf))
        for name, buf in outputs.items():
            binding.bind_output(name, self.device_type_of_buffers, device_id, np.dtype(buf.dtype).type, tuple(buf.shape), self._pointer(buf))
        # Keep the buffers alive as long as the binding: ORT holds raw pointers only.
        return (binding, inputs, outputs)

    @property
    def device_type_of_buffers(self) -> str:
        return "cpu" if self.device.is_host else "cuda"

    def _run(self, binding: Any) -> None:
        self.session.run_with_iobinding(binding[0])

    def _close(self) -> None:
        self.session = None


class OrtCudaRunner(OrtRunner):
    """onnxruntime-gpu's CUDA execution provider; device buffers when the device is a GPU."""

    backend = "ort-cuda"

    def _providers(self) -> list[Any]:
        cuda = {"device_id": int(getattr(self.device, "device_id", 0)), **self.provider_options.get("cuda", {})}
        return [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


class OrtTrtRunner(OrtRunner):
    """onnxruntime-gpu's TensorRT execution provider (CUDA for what TensorRT does not take)."""

    backend = "ort-trt"

    def _providers(self) -> list[Any]:
        device_id = int(getattr(self.device, "device_id", 0))
        cache = str(self.path.parent / ".ort-trt-cache")
        trt = {
            "device_id": device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": os.environ.get("SALKIT_ORT_TRT_CACHE", cache),
            **self.provider_options.get("tensorrt", {}),
        }
        return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
