"""OpenVINO on the CPU (``openvino``): the bundle's ONNX graphs compiled by OpenVINO's CPU plugin.

The inference precision is a compile option: ``fp32`` compiles with ``INFERENCE_PRECISION_HINT``
f32 (OpenVINO's default on CPUs with bf16 units would be bf16, silently), ``bf16`` with bf16
(only meaningful where the CPU has bf16 units: elsewhere the plugin ignores it), and an ``int8``
file is a QDQ graph whose quantised parts OpenVINO runs in int8 with the rest in f32.

Buffers are bound as in the ONNX Runtime runner: :meth:`bind` creates one infer request whose
input and output tensors *share memory* with the loop's numpy buffers, so a run reads the inputs
in place and writes the outputs into the loop's arrays; the hot path is ``start_async(); wait()``
(``infer()`` would copy every output into a fresh array). The model is compiled once per set of
input shapes (static shapes let the plugin pick its kernels and memory plan ahead), on the
first bind of that shape. ``openvino`` is imported when a runner loads.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.backends.base import HOST, Array, Runner
from salkit.runtime.bundle import DYNAMIC, GraphSpec, TensorSpec

_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}
_OV_TYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "u8": "uint8", "i8": "int8", "boolean": "bool"}
_core_lock = threading.Lock()
_core: Any = None


def import_openvino() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise SalkitError(f"backend openvino needs the openvino package ({err}); pip install 'salkit[openvino]'") from None
    return openvino


def core() -> Any:
    """One OpenVINO Core per process (it owns the plugins and their thread pools)."""
    global _core
    with _core_lock:
        if _core is None:
            _core = import_openvino().Core()
        return _core


def _spec(port: Any) -> TensorSpec:
    name = port.get_any_name()
    type_name = port.get_element_type().get_type_name()
    dtype = _OV_TYPES.get(type_name)
    if dtype is None:
        raise SalkitError(f"tensor {name!r} has OpenVINO type {type_name}, which the runtime does not handle")
    dims = tuple(d.get_length() if d.is_static else DYNAMIC for d in port.get_partial_shape())
    return TensorSpec(name, dims, dtype)


class OpenVinoRunner(Runner):
    """One graph compiled by OpenVINO's CPU plugin (latency hint, ``threads`` inference threads)."""

    backend = "openvino"

    def __init__(self, path: str | Path, spec: GraphSpec | None = None, *, precision: str = "fp32", **common: Any) -> None:
        """``common``: the :class:`Runner`'s ``graph``, ``threads`` and ``device`` (a host device)."""
        super().__init__(path, spec, **common)
        if not self.device.is_host:
            raise SalkitError(f"backend openvino runs on the CPU; graph {self.graph!r} was given device {self.device.name}")
        if precision not in _HINTS:
            raise SalkitError(f"backend openvino has no {precision!r} precision (it runs {', '.join(_HINTS)})")
        self.precision = precision
        self.device = HOST
        self.model: Any = None
        self._compiled: dict[tuple[tuple[str, tuple[int, ...]], ...], Any] = {}

    def config(self) -> dict[str, Any]:
        return {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
            "INFERENCE_NUM_THREADS": int(self.threads or 0),  # 0: the plugin's choice (one per core)
        }

    def _load(self) -> None:
        try:
            self.model = core().read_model(str(self.path))
        except SalkitError:
            raise
        except Exception as err:  # OpenVINO raises RuntimeError subclasses for unreadable graphs
            raise SalkitError(f"graph {self.graph!r}: OpenVINO cannot read {self.path}: {str(err).splitlines()[0]}") from None

    def _describe(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        return tuple(_spec(p) for p in self.model.inputs), tuple(_spec(p) for p in self.model.outputs)

    def compiled(self, shapes: dict[str, tuple[int, ...]]) -> Any:
        """The model compiled for these input shapes (compiled on first use, then reused)."""
        key = tuple(sorted(shapes.items()))
        if key not in self._compiled:
            ov = import_openvino()
            model = self.model.clone()
            model.reshape({port.get_any_name(): ov.PartialShape(list(shapes[port.get_any_name()])) for port in model.inputs})
            try:
                self._compiled[key] = core().compile_model(model, "CPU", self.config())
            except Exception as err:
                raise SalkitError(f"graph {self.graph!r}: OpenVINO cannot compile {self.path.name} for {dict(shapes)}: "
                                  f"{str(err).splitlines()[0]}") from None
        return self._compiled[key]

    def _bind(self, inputs: dict[str, Array], outputs: dict[str, Array]) -> Any:
        ov = import_openvino()
        for name, buf in (*inputs.items(), *outputs.items()):
            if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous):
                raise SalkitError(f"graph {self.graph!r}: buffer {name!r} must be a C-contiguous numpy array")
        request = self.compiled({k: tuple(v.shape) for k, v in inputs.items()}).create_infer_request()
        tensors = []
        for name, buf in (*inputs.items(), *outputs.items()):
            tensor = ov.Tensor(buf, shared_memory=True)  # wraps the loop's buffer: no copy in or out
            request.set_tensor(name, tensor)
            tensors.append(tensor)
        # Keep the buffers and tensors alive as long as the request: OpenVINO holds raw pointers.
        return (request, tensors, inputs, outputs)

    def _run(self, binding: Any) -> None:
        request = binding[0]
        request.start_async()
        request.wait()

    def _close(self) -> None:
        self._compiled.clear()
        self.model = None


__all__ = ["OpenVinoRunner", "core", "import_openvino"]
