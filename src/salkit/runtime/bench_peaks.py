"""Measured GEMM peaks per precision (fp32, bf16, int8): the denominators of ``roofline_fraction``.

Each peak is the best rate of a square matrix product with every core, through every engine at
hand that runs that precision:

======== ==========================================================================
fp32     numpy (OpenBLAS), ONNX Runtime (MLAS), OpenVINO (f32 inference precision)
bf16     OpenVINO with inference precision bf16 — only where the CPU has bf16 units
         (elsewhere OpenVINO runs f32 and the number would be a mislabelled fp32 rate)
int8     ONNX Runtime ``MatMulInteger`` (u8 × s8 → i32) and OpenVINO on a QDQ MatMul
======== ==========================================================================

A precision with no engine here is recorded as ``{}`` and its peak as ``null``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from salkit.runtime.bench_flops import best_gemm_rate, gemm_rates
from salkit.runtime.cpu import cpu_info


def _matmul_model(size: int, int8: str | None = None) -> Any:
    """A one-MatMul ONNX model: float (a, b → c), ``int8="integer"`` MatMulInteger, ``"qdq"`` Q/DQ around MatMul."""
    from onnx import TensorProto, helper

    square = [size, size]
    if int8 == "integer":
        nodes = [helper.make_node("MatMulInteger", ["a", "b"], ["c"])]
        ins = [helper.make_tensor_value_info("a", TensorProto.UINT8, square), helper.make_tensor_value_info("b", TensorProto.INT8, square)]
        out = helper.make_tensor_value_info("c", TensorProto.INT32, square)
        inits = []
    elif int8 == "qdq":
        scale, zero_u8, zero_i8 = (helper.make_tensor(n, t, [], [v]) for n, t, v in
                                   (("s", TensorProto.FLOAT, 0.05), ("zu", TensorProto.UINT8, 128), ("zi", TensorProto.INT8, 0)))
        nodes = [
            helper.make_node("QuantizeLinear", ["a", "s", "zu"], ["aq"]), helper.make_node("DequantizeLinear", ["aq", "s", "zu"], ["ad"]),
            helper.make_node("QuantizeLinear", ["b", "s", "zi"], ["bq"]), helper.make_node("DequantizeLinear", ["bq", "s", "zi"], ["bd"]),
            helper.make_node("MatMul", ["ad", "bd"], ["c"]),
        ]
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, square) for n in ("a", "b")]
        out = helper.make_tensor_value_info("c", TensorProto.FLOAT, square)
        inits = [scale, zero_u8, zero_i8]
    else:
        nodes = [helper.make_node("MatMul", ["a", "b"], ["c"])]
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, square) for n in ("a", "b")]
        out = helper.make_tensor_value_info("c", TensorProto.FLOAT, square)
        inits = []
    model = helper.make_model(helper.make_graph(nodes, "gemm", ins, [out], initializer=inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _openvino_rate(model_bytes: bytes, feeds: dict[str, np.ndarray], hint: str, size: int, repeats: int) -> float | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model_bytes, b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    for name, value in feeds.items():
        request.set_tensor(name, ov.Tensor(value, shared_memory=True))
    return best_gemm_rate(lambda: (request.start_async(), request.wait()), size, repeats)


def _ort_rate(model_bytes: bytes, feeds: dict[str, np.ndarray], size: int, repeats: int) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return best_gemm_rate(lambda: session.run(None, feeds), size, repeats)


def gemm_peaks(size: int = 1536, repeats: int = 8) -> dict[str, dict[str, float]]:
    """{"fp32": {engine: GFLOP/s}, "bf16": {…}, "int8": {…}} (int8: 2 ops per multiply-add, as for floats)."""
    try:
        import onnx  # noqa: F401  (the model builders need it; without it only numpy's fp32 rate)
    except ImportError:
        return {"fp32": gemm_rates(size, repeats), "bf16": {}, "int8": {}}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    peaks: dict[str, dict[str, float]] = {"fp32": gemm_rates(size, repeats), "bf16": {}, "int8": {}}
    floats = _matmul_model(size)
    rate = _openvino_rate(floats, {"a": a, "b": b}, "f32", size, repeats)
    if rate is not None:
        peaks["fp32"]["openvino"] = rate
    if cpu_info().bf16:
        rate = _openvino_rate(floats, {"a": a, "b": b}, "bf16", size, repeats)
        if rate is not None:
            peaks["bf16"]["openvino"] = rate
    a8 = rng.integers(0, 256, (size, size), dtype=np.uint8)
    b8 = rng.integers(-128, 128, (size, size), dtype=np.int8)
    rate = _ort_rate(_matmul_model(size, "integer"), {"a": a8, "b": b8}, size, repeats)
    if rate is not None:
        peaks["int8"]["onnxruntime"] = rate
    rate = _openvino_rate(_matmul_model(size, "qdq"), {"a": a, "b": b}, "f32", size, repeats)
    if rate is not None:
        peaks["int8"]["openvino"] = rate
    return peaks


def best(rates: dict[str, float]) -> float | None:
    return max(rates.values()) if rates else None


__all__ = ["best", "gemm_peaks"]
