"""Counted FLOPs of a bundle's graphs and the machine's measured fp32 GEMM peak (for ``bench``).

FLOPs are counted from the ONNX graphs (convolutions, transposed convolutions, MatMul and Gemm:
2 FLOPs per multiply–add; elementwise ops are ignored, so the count is a lower bound of the work)
at batch 1 (ONNX shape inference, or one ONNX Runtime run where sizes are data-dependent), and
scale linearly with the batch. The peak is the best of a few float32 square matrix products with
every core, through numpy's BLAS and through ONNX Runtime's MLAS (:func:`gemm_rates`), i.e. what
this machine reaches on the most favourable dense kernel. The ``onnx`` package is needed only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.base.timing import best_gemm_rate


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
        # Shape inference loses the batch through some ops (Where, Expand …) and leaves it symbolic;
        # every graph here runs at batch 1 for counting, so a symbolic leading axis is 1.
        shapes[value.name] = tuple(
            d.dim_value if d.HasField("dim_value") else (1 if axis == 0 else -1) for axis, d in enumerate(dims)
        )
    return shapes


def _attr(node: Any, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _measured_shapes(model: Any, names: set[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of ``names`` from one ONNX Runtime run at batch 1 on zeros.

    Static shape inference cannot follow data-dependent sizes (a Resize to another tensor's
    shape), so the dense ops' operand shapes are read from an actual run instead.
    """
    import onnxruntime as ort

    onnx = _onnx()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    inferred = {v.name: v for v in probe.graph.value_info}
    for name in sorted(names - existing):
        value = onnx.ValueInfoProto()
        if name in inferred:
            value.CopyFrom(inferred[name])
            value.type.tensor_type.ClearField("shape")
        else:
            value.name = name
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        probe.graph.output.append(value)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named value
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for arg in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape]
        feeds[arg.name] = np.zeros(dims, dtype=np.float32)
    wanted = [o.name for o in session.get_outputs() if o.name in names]
    return {name: tuple(value.shape) for name, value in zip(wanted, session.run(wanted, feeds), strict=True)}


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
    dense = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")]
    operands = {name for n in dense for name in (n.input[0], n.input[1], n.output[0])}
    unknown = {name for name in operands if name not in shapes or any(d < 0 for d in shapes[name])}
    if unknown:
        shapes.update(_measured_shapes(model, unknown))
    total = 0
    for node in dense:
        op = node.op_type
        inp, weight, out = (shapes.get(name, ()) for name in (node.input[0], node.input[1], node.output[0]))
        if not inp or not weight or not out or any(d < 0 for d in (*inp, *weight, *out)):
            raise SalkitError(f"{Path(path).name}: cannot determine the shapes around {op} node {node.name!r}")
        if op in ("Conv", "ConvTranspose"):
            kernel = int(np.prod(weight[2:]))
            if op == "Conv":  # weight (Cout, Cin/g, k…): each output element costs Cin/g·k MACs
                total += 2 * int(np.prod(out)) * weight[1] * kernel
            else:  # ConvTranspose weight (Cin, Cout/g, k…): each input element scatters Cout/g·k MACs
                total += 2 * int(np.prod(inp)) * weight[1] * kernel
        else:  # MatMul / Gemm: each output element is one inner product
            inner = inp[0] if (op == "Gemm" and _attr(node, "transA", 0)) else inp[-1]
            total += 2 * int(np.prod(out)) * inner
    return total


def gemm_rates(size: int = 1536, repeats: int = 8) -> dict[str, float]:
    """Best float32 GEMM throughput in GFLOP/s of each matrix-multiply kernel at hand here.

    ``numpy`` (its bundled OpenBLAS) and ``onnxruntime`` (a one-node MatMul graph: MLAS, the
    kernels the runtime's convolutions use). They can differ by 2×: the OpenBLAS wheel may pick
    AVX2 kernels on a CPU whose AVX-512 units MLAS does use, and a peak that low would put the
    runtime's convolutions above 100 % of it.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    rates = {"numpy": best_gemm_rate(lambda: np.matmul(a, b, out=out), size, repeats)}
    session = _matmul_session(size)
    if session is not None:
        feeds = {"a": a, "b": b}
        rates["onnxruntime"] = best_gemm_rate(lambda: session.run(None, feeds), size, repeats)
    return rates


def gemm_peak_gflops(size: int = 1536, repeats: int = 8) -> float:
    """The machine's measured fp32 GEMM peak: the best of :func:`gemm_rates`."""
    return max(gemm_rates(size, repeats).values())


def _matmul_session(size: int) -> Any:
    try:
        import onnx
        import onnx.helper as helper
        import onnxruntime as ort
    except ImportError:
        return None
    square = [size, size]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, square) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, square)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
