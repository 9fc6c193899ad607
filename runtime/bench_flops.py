"""Counted FLOPs of a bundle's graphs and the machine's measured fp32 GEMM peak (for ``bench``).

FLOPs are counted from the ONNX graphs (convolutions, transposed convolutions, MatMul and Gemm:
2 FLOPs per multiply–add; elementwise ops are ignored, so the count is a lower bound of the work)
at batch 1 after ONNX shape inference, and scale linearly with the batch. The peak is the best of
a few float32 ``numpy.matmul`` calls on square matrices with every core, i.e. what this machine's
BLAS reaches on the most favourable dense kernel. The ``onnx`` package is needed only here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from salkit.kernels.errors import SalkitError


def _onnx() -> Any:
    try:
        import onnx
        import onnx.shape_inference
    except ImportError:
        raise SalkitError("counting FLOPs needs the onnx package (pip install onnx)") from None
    return onnx


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    graph = model.graph
    shapes: dict[str, tuple[int, ...]] = {init.name: tuple(init.dims) for init in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    return shapes


def _attr(node: Any, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def graph_flops(path: str | Path) -> int:
    """FLOPs of one run of the graph at batch 1 (dense ops only)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # the dynamic batch axis → 1
    model = onnx.shape_inference.infer_shapes(model)
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        op = node.op_type
        if op in ("Conv", "ConvTranspose"):
            weight = shapes.get(node.input[1], ())
            out = shapes.get(node.output[0], ())
            inp = shapes.get(node.input[0], ())
            if len(weight) < 3 or any(d < 0 for d in (*out, *inp)):
                raise SalkitError(f"{Path(path).name}: cannot infer the shapes around {op} node {node.name!r}")
            kernel = int(np.prod(weight[2:]))
            if op == "Conv":  # weight (Cout, Cin/g, k…): each output element costs Cin/g·k MACs
                total += 2 * int(np.prod(out)) * weight[1] * kernel
            else:  # ConvTranspose weight (Cin, Cout/g, k…): each input element scatters Cout/g·k MACs
                total += 2 * int(np.prod(inp)) * weight[1] * kernel
        elif op in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0], ())
            out = shapes.get(node.output[0], ())
            if not a or not out or any(d < 0 for d in (*a, *out)):
                raise SalkitError(f"{Path(path).name}: cannot infer the shapes around {op} node {node.name!r}")
            inner = a[0] if (op == "Gemm" and _attr(node, "transA", 0)) else a[-1]
            total += 2 * int(np.prod(out)) * inner
    return total


def gemm_peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    """Best float32 GEMM throughput of ``numpy.matmul`` here, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: BLAS threads start, pages fault in
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9
