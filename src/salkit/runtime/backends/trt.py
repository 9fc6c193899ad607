"""Native TensorRT runner (``tensorrt`` backend) for the ``.plan`` engines of a bundle.

Written against TensorRT's documented Python API (10.x): ``Runtime.deserialize_cuda_engine``,
``engine.num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` / ``get_tensor_dtype`` /
``get_tensor_profile_shape``, ``context.set_input_shape``, ``context.set_tensor_address`` and
``context.execute_async_v3`` on a non-default stream. CUDA memory and streams come from
cuda-python (``cuda.bindings.runtime``: ``cudaMalloc``, ``cudaMallocHost``, ``cudaMemcpyAsync``,
``cudaStreamCreate``), what NVIDIA's samples use since TensorRT 10.13 (``salkit[trt]``).

Buffers: with a CUDA device (CuPy present) the loop's buffers are device arrays and a binding
points TensorRT straight at them; the loop's own math runs on CuPy's stream, so a run waits for
the device before it enqueues and for its stream after (the loop reads the outputs next). With
the host device the runner stages: pinned host buffers are what the loop sees, and each run
copies them to its own device buffers and back on its stream (correct, but a copy per engine call).

Everything GPU-related is imported when a runner loads; importing this module needs nothing.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.backends.base import Array, Device, Runner
from salkit.runtime.bundle import DYNAMIC, GraphSpec, TensorSpec, sha256_file


class _CudaRuntime:
    """The few CUDA runtime calls the runner needs, through cuda-python."""

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python ≥ 12.6 layout
        except ImportError:
            try:
                from cuda import cudart  # older cuda-python
            except ImportError:
                raise SalkitError("the tensorrt backend needs cuda-python (pip install 'salkit[trt]')") from None
        self.cudart = cudart
        self.owned: list[tuple[str, int]] = []  # (kind, pointer) to free on close

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise SalkitError(f"CUDA call {what} failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def stream(self) -> int:
        return int(self._check(self.cudart.cudaStreamCreate(), "cudaStreamCreate"))

    def malloc(self, nbytes: int) -> int:
        ptr = int(self._check(self.cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self.owned.append(("device", ptr))
        return ptr

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A page-locked host array (fast, asynchronous copies)."""
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._check(self.cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
        self.owned.append(("host", ptr))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def copy(self, dst: int, src: int, nbytes: int, to_device: bool, stream: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice if to_device else self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def synchronize(self, stream: int) -> None:
        self._check(self.cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def free_all(self) -> None:
        """Release what malloc / pinned handed out."""
        for kind, ptr in reversed(self.owned):
            (self.cudart.cudaFree if kind == "device" else self.cudart.cudaFreeHost)(ptr)
        self.owned.clear()


class _Binding:
    def __init__(self, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int], staged: list[tuple[np.ndarray, int, bool]]) -> None:
        self.shapes, self.addresses, self.staged = shapes, addresses, staged
        self.keep: list[Any] = []  # device buffers owned by this binding


class TrtRunner(Runner):
    backend = "tensorrt"

    def __init__(
        self,
        path: str | Path,
        spec: GraphSpec | None = None,
        *,
        graph: str | None = None,
        device: Device | None = None,
        threads: int | None = None,  # accepted for a uniform signature; TensorRT has no CPU threads knob
        sha256: str | None = None,
    ) -> None:
        super().__init__(path, spec, graph=graph, device=device)  # not threads: TensorRT has no CPU threads to set
        self.sha256 = sha256
        self.engine: Any = None
        self.context: Any = None

    def _load(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise SalkitError("the tensorrt backend needs the tensorrt package (pip install 'salkit[trt]')") from None
        if self.sha256 and sha256_file(self.path) != self.sha256:
            raise SalkitError(f"engine {self.path} does not match the SHA-256 in the manifest (rebuild the bundle's engines)")
        self.trt, self.cuda = trt, _CudaRuntime()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise SalkitError(f"TensorRT cannot deserialize {self.path} (built by another TensorRT version or for another GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()

    def _describe(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        trt, engine = self.trt, self.engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dims = tuple(int(d) if int(d) >= 0 else DYNAMIC for d in engine.get_tensor_shape(name))
            spec = TensorSpec(name, dims, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        return tuple(inputs), tuple(outputs)

    def profile_batch_range(self, name: str) -> tuple[int, int]:
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        return int(low[0]), int(high[0])

    def _address(self, array: Array) -> int:
        return int(array.data.ptr) if not self.device.is_host else int(array.ctypes.data)

    def allocate(self, input_shapes: Any) -> tuple[dict[str, Array], dict[str, Array]]:
        if not self.device.is_host:
            return super().allocate(input_shapes)
        self._require_loaded()  # host device: pinned buffers so the staging copies are asynchronous
        outs = self.output_shapes(input_shapes)
        ins = {s.name: self.cuda.pinned(tuple(input_shapes[s.name]), np.dtype(s.dtype)) for s in self._inputs}
        return ins, {s.name: self.cuda.pinned(outs[s.name], np.dtype(s.dtype)) for s in self._outputs}

    def _bind(self, inputs: dict[str, Array], outputs: dict[str, Array]) -> _Binding:
        for name, buf in inputs.items():
            low, high = self.profile_batch_range(name)
            if not low <= buf.shape[0] <= high:
                raise SalkitError(f"graph {self.graph!r}: batch {buf.shape[0]} is outside the engine's profile [{low}, {high}] for {name!r}")
        shapes = {k: tuple(v.shape) for k, v in {**inputs, **outputs}.items()}
        binding = _Binding(shapes, {}, [])
        for name, buf in {**inputs, **outputs}.items():
            if self.device.is_host:
                device_ptr = self.cuda.malloc(buf.nbytes)
                binding.staged.append((buf, device_ptr, name in inputs))
                binding.addresses[name] = device_ptr
            else:
                binding.addresses[name] = self._address(buf)
        binding.keep.extend([*inputs.values(), *outputs.values()])
        return binding

    def _enqueue(self, binding: _Binding) -> bool:
        for name, shape in binding.shapes.items():
            if self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT:
                self.context.set_input_shape(name, shape)
            self.context.set_tensor_address(name, binding.addresses[name])
        return bool(self.context.execute_async_v3(self.stream))

    def _run(self, binding: _Binding) -> None:
        for host, device_ptr, is_input in binding.staged:
            if is_input:
                self.cuda.copy(device_ptr, int(host.ctypes.data), host.nbytes, True, self.stream)
        if not binding.staged:
            self.device.synchronize()  # the loop wrote the inputs on the device's own stream
        if not self._enqueue(binding):
            raise SalkitError(f"TensorRT execute_async_v3 failed for graph {self.graph!r}")
        for host, device_ptr, is_input in binding.staged:
            if not is_input:
                self.cuda.copy(int(host.ctypes.data), device_ptr, host.nbytes, False, self.stream)
        self.cuda.synchronize(self.stream)  # the loop reads the outputs right after run()

    def _close(self) -> None:
        self.cuda.synchronize(self.stream)
        self.context = None
        self.engine = None
        self.cuda.free_all()
