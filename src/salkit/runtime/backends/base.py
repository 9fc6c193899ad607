"""The runner interface every backend implements, and the host (numpy) device.

A *runner* executes one graph of a bundle (an ONNX file or a TensorRT plan). Its life cycle,
modelled on Polygraphy's runners::

    runner = Runner(path, spec)          # cheap: nothing loaded yet
    with runner:                         # load() … close()
        inputs, outputs = runner.describe()          # TensorSpecs read from the graph itself
        out = runner.infer({"image": x})             # checked, allocating convenience call
        binding = runner.bind({"image": xbuf}, {"feat0": fbuf, …})  # buffers from runner.device
        runner.run(binding)                          # the hot path: no checks, no allocation

Buffers live on the runner's :class:`Device` (``runner.device``): numpy arrays for the host,
device arrays for a GPU backend. The loops (``runtime/loops*.py``) allocate every buffer once
through the device, bind them once, and then only call :meth:`Runner.run`, so a GPU loop never
copies through the host.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.bundle import DYNAMIC, GraphSpec, TensorSpec

Array = Any  # a buffer of the runner's device: numpy.ndarray on the host


class Device:
    """Where buffers live and where the loops' elementwise math runs: numpy on the host.

    ``xp`` is the array namespace of the device (numpy here, cupy for a CUDA device); the loops
    use only operations numpy and cupy share, with ``out=`` so that no step allocates.
    """

    name = "cpu"
    xp = np
    is_host = True

    def empty(self, shape: Sequence[int], dtype: str | np.dtype = "float32") -> Array:
        return np.empty(tuple(shape), dtype=dtype)

    def upload(self, host: np.ndarray, out: Array) -> None:
        """Copy a host array into a device buffer of the same shape."""
        np.copyto(out, host, casting="no")

    def to_device(self, host: np.ndarray) -> Array:
        out = self.empty(host.shape, host.dtype)
        self.upload(np.ascontiguousarray(host), out)
        return out

    def download(self, array: Array) -> np.ndarray:
        """A host copy of a device buffer (the caller may keep it)."""
        return np.array(array, copy=True)

    def synchronize(self) -> None:
        """Wait for queued device work (nothing to wait for on the host)."""


HOST = Device()


def check_feeds(name: str, specs: Sequence[TensorSpec], feeds: Mapping[str, Any]) -> None:
    """Refuse feeds that do not match a graph's inputs: names, dtypes, ranks, non-batch dims.

    Every message names the graph, the tensor and the offending value.
    """
    expected = {s.name for s in specs}
    given = set(feeds)
    if given != expected:
        missing, extra = sorted(expected - given), sorted(given - expected)
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else ""]
        raise SalkitError(f"graph {name!r}: inputs {sorted(given)} do not match {sorted(expected)} ({', '.join(p for p in parts if p)})")
    batch: int | None = None
    for spec in specs:
        value = feeds[spec.name]
        shape = tuple(getattr(value, "shape", ()))
        dtype = np.dtype(getattr(value, "dtype", type(value)))
        if dtype != np.dtype(spec.dtype):
            raise SalkitError(f"graph {name!r}: input {spec.name!r} must be {spec.dtype}, got {dtype}")
        if len(shape) != len(spec.shape):
            raise SalkitError(
                f"graph {name!r}: input {spec.name!r} must have rank {len(spec.shape)} (shape {_fmt(spec.shape)}), got shape {shape}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
            if want not in (DYNAMIC,) and want >= 0 and want != got:
                raise SalkitError(
                    f"graph {name!r}: input {spec.name!r} axis {axis} must be {want} (shape {_fmt(spec.shape)}), got shape {shape}"
                )
        if shape and spec.shape and spec.shape[0] == DYNAMIC:
            if shape[0] == 0:
                raise SalkitError(f"graph {name!r}: input {spec.name!r} is an empty batch (shape {shape})")
            if batch is not None and shape[0] != batch:
                raise SalkitError(f"graph {name!r}: inputs disagree on the batch size ({batch} vs {shape[0]} for {spec.name!r})")
            batch = shape[0]


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join("B" if d == DYNAMIC else str(d) for d in shape) + ")"


class Runner(abc.ABC):
    """One graph on one backend. Subclasses implement the ``_``-prefixed hooks."""

    backend: str = "abstract"  # registry name, e.g. "ort-cpu"

    def __init__(
        self,
        path: str | Path,
        spec: GraphSpec | None = None,
        *,
        graph: str | None = None,
        threads: int | None = None,
        device: Device | None = None,
    ) -> None:
        """``threads``: the backend's CPU inference threads (None: its own choice, one per core)."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise SalkitError(f"threads must be a positive integer, got {threads!r}")
        self.path = Path(path)
        self.spec = spec
        self.graph = graph or self.path.stem
        self.threads = threads
        self.device: Device = device or HOST
        self._loaded = False
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    # -- life cycle -------------------------------------------------------------------------
    def load(self) -> "Runner":
        if not self._loaded:
            if not self.path.is_file():
                raise SalkitError(f"graph {self.graph!r}: file {self.path} does not exist")
            self._load()
            self._inputs, self._outputs = self._describe()
            self._check_against_manifest()
            self._inputs, self._outputs = self._fill_from_manifest(self._inputs), self._fill_from_manifest(self._outputs)
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self) -> "Runner":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def loaded(self) -> bool:
        return self._loaded

    # -- I/O description --------------------------------------------------------------------
    def describe(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """(inputs, outputs) as read from the graph: names, shapes (-1 = dynamic), dtypes."""
        self._require_loaded()
        return self._inputs, self._outputs

    def output_shapes(self, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
        """Concrete output shapes for given input shapes (the batch axis follows the inputs)."""
        self._require_loaded()
        batch = next(iter(input_shapes.values()))[0]
        shapes = {}
        for out in self._outputs:
            dims = tuple(batch if (i == 0 and d == DYNAMIC) else d for i, d in enumerate(out.shape))
            if any(d < 0 for d in dims):
                raise SalkitError(f"graph {self.graph!r}: output {out.name!r} has an unknown non-batch dimension {out.shape}")
            shapes[out.name] = dims
        return shapes

    # -- execution --------------------------------------------------------------------------
    def allocate(self, input_shapes: Mapping[str, Sequence[int]]) -> tuple[dict[str, Array], dict[str, Array]]:
        """Device buffers for every input and output at the given input shapes."""
        self._require_loaded()
        ins = {s.name: self.device.empty(input_shapes[s.name], s.dtype) for s in self._inputs}
        outs = {s.name: self.device.empty(shape, self._dtype_of(s.name)) for s, shape in
                ((s, self.output_shapes(input_shapes)[s.name]) for s in self._outputs)}
        return ins, outs

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Checked convenience call: host arrays in, fresh host arrays out."""
        self._require_loaded()
        check_feeds(self.graph, self._inputs, feeds)
        for key, value in feeds.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise SalkitError(f"graph {self.graph!r}: input {key!r} holds {int((~np.isfinite(value)).sum())} NaN/inf values")
        ins, outs = self.allocate({k: v.shape for k, v in feeds.items()})
        for key, value in feeds.items():
            self.device.upload(np.ascontiguousarray(value), ins[key])
        self.run(self.bind(ins, outs))
        self.device.synchronize()
        return {k: self.device.download(v) for k, v in outs.items()}

    def bind(self, inputs: Mapping[str, Array], outputs: Mapping[str, Array]) -> Any:
        """Prepare a reusable binding of device buffers (shapes fixed from here on)."""
        self._require_loaded()
        names_in, names_out = {s.name for s in self._inputs}, {s.name for s in self._outputs}
        if set(inputs) != names_in or set(outputs) != names_out:
            raise SalkitError(
                f"graph {self.graph!r}: binding {sorted(inputs)} → {sorted(outputs)} does not match "
                f"{sorted(names_in)} → {sorted(names_out)}"
            )
        return self._bind(dict(inputs), dict(outputs))

    def run(self, binding: Any) -> None:
        """Execute with bound buffers (asynchronous on a GPU: ordered on the runner's stream)."""
        self._run(binding)

    # -- helpers ----------------------------------------------------------------------------
    def _dtype_of(self, output: str) -> str:
        return next(s.dtype for s in self._outputs if s.name == output)

    def _require_loaded(self) -> None:
        if not self._loaded:
            raise SalkitError(f"graph {self.graph!r} ({self.backend}) is not loaded: call load() or use it as a context manager")

    def _check_against_manifest(self) -> None:
        """The graph file must have the I/O names, ranks and dtypes the manifest promises."""
        if self.spec is None:
            return
        for kind, promised, actual in (("inputs", self.spec.inputs, self._inputs), ("outputs", self.spec.outputs, self._outputs)):
            have = {t.name: t for t in actual}
            for want in promised:
                got = have.get(want.name)
                if got is None:
                    raise SalkitError(
                        f"graph {self.graph!r} ({self.path.name}): manifest lists {kind[:-1]} {want.name!r}, "
                        f"the graph has {sorted(have)}"
                    )
                if len(got.shape) != len(want.shape) or got.dtype != want.dtype:
                    raise SalkitError(
                        f"graph {self.graph!r}: {kind[:-1]} {want.name!r} is {got.dtype}{_fmt(got.shape)} in the file, "
                        f"{want.dtype}{_fmt(want.shape)} in the manifest"
                    )

    def _fill_from_manifest(self, specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
        """Symbolic non-batch dims in the file (exporters often leave them) take the manifest's value."""
        if self.spec is None:
            return specs
        promised = {t.name: t for t in (*self.spec.inputs, *self.spec.outputs)}
        filled = []
        for spec in specs:
            want = promised.get(spec.name)
            if want is not None and len(want.shape) == len(spec.shape):
                dims = tuple(w if (g < 0 and i > 0) else g for i, (g, w) in enumerate(zip(spec.shape, want.shape, strict=True)))
                spec = TensorSpec(spec.name, dims, spec.dtype)
            filled.append(spec)
        return tuple(filled)

    # -- backend hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _describe(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]: ...

    @abc.abstractmethod
    def _bind(self, inputs: dict[str, Array], outputs: dict[str, Array]) -> Any: ...

    @abc.abstractmethod
    def _run(self, binding: Any) -> None: ...

    def _close(self) -> None:  # noqa: B027 — an optional hook: runners without resources to release keep the default
        """Release backend resources (default: nothing)."""
