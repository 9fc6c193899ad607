"""Measured GEMM peaks per precision (fp32, bf16, int8): the denominators of ``roofline_fraction``.

Each peak is the best rate of a square matrix product with every core, through every engine at
hand that runs that precision:

======== ==========================================================================
fp32     numpy (OpenBLAS), ONNX Runtime (MLAS), OpenVINO (f32 inference precision)
bf16     OpenVINO with inference precision bf16 — only where the CPU has bf16 units
         (elsewhere OpenVINO runs f32 and the number would be a mislabelled fp32 rate)
int8     ONNX Runtime ``MatMulInteger`` (u8 × s8 → i32) and OpenVINO on a QDQ MatMul
======== ==========================================================================

torch counts too, as every engine installed here does: its oneDNN kernels (bf16 on AMX, for one)
can be 3× faster than the runtime's own engines, and a roofline against the plan's engine alone
would call that unused throughput "the limit". The runtime never imports torch: the
``salkit.bench_baselines`` plug-in that times torch's predict for ``--compare-torch`` also offers
``gemm_rates(size, repeats, *, bf16) -> {precision: GFLOP/s}``, and :func:`plugin_gemm_rates`
runs it in a child process (``python -m salkit.runtime.bench.peaks``), so neither torch's memory
nor its OpenMP threads stay in the process whose predicts are timed. Where the plug-in is absent
(a runtime-only install) its status says ``not installed`` and it sets no peak.

A precision with no engine here is recorded as ``{}`` and its peak as ``null``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any, Sequence

import numpy as np

from salkit.base.timing import best_gemm_rate
from salkit.runtime.bench.flops import gemm_rates
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
        import onnx  # noqa: F401 — the model builders need it; without it only numpy's fp32 rate
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


def best_engine(rates: dict[str, float]) -> str | None:
    """The engine that set the best of ``rates`` (None for no engine)."""
    return max(rates, key=lambda engine: rates[engine]) if rates else None


PRECISIONS = ("fp32", "bf16", "int8")
# Plug-ins of the salkit.bench_baselines group whose GEMM rates count towards the peaks.
PEAK_PLUGINS = ("torch",)
MEASURED, NOT_INSTALLED = "measured", "not installed"
PLUGIN_TIMEOUT_S = 900.0


def plugin_gemm_rates(name: str, size: int, repeats: int, *, bf16: bool,
                      timeout: float = PLUGIN_TIMEOUT_S) -> tuple[dict[str, float], str]:
    """({precision: GFLOP/s}, status) of the ``salkit.bench_baselines`` plug-in ``name``'s GEMM,
    measured in a child process; status ``measured``, ``not installed`` or ``failed: …`` (one line)."""
    from importlib.metadata import entry_points

    from salkit.runtime.bench.baselines import GROUP

    if not any(ep.name == name for ep in entry_points(group=GROUP)):
        return {}, NOT_INSTALLED
    command = [sys.executable, "-m", "salkit.runtime.bench.peaks", name, str(size), str(repeats), "bf16" if bf16 else "no-bf16"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {}, f"failed: no answer within {timeout:.0f} s"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {}, f"failed: {why}"
    answer = json.loads(lines[-1])
    rates = {str(p): float(r) for p, r in answer.get("rates", {}).items() if p in PRECISIONS and r and r > 0}
    return rates, str(answer.get("status", MEASURED))


def _plugin_child(name: str, size: int, repeats: int, bf16: bool) -> dict[str, Any]:
    """What the child process of :func:`plugin_gemm_rates` prints (one JSON line)."""
    from importlib.metadata import entry_points

    from salkit.runtime.bench.baselines import GROUP

    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        return {"rates": {}, "status": NOT_INSTALLED}
    try:
        factory = found[0].load()
    except ImportError as err:  # the plug-in is registered but its library (torch) is not installed
        return {"rates": {}, "status": f"{NOT_INSTALLED} ({err})"}
    gemm = getattr(factory, "gemm_rates", None)
    if gemm is None:
        return {"rates": {}, "status": "not measured: the plug-in offers no gemm_rates"}
    return {"rates": gemm(size, repeats, bf16=bf16), "status": MEASURED}


def engine_peaks(size: int = 1536, repeats: int = 8,
                 plugins: Sequence[str] = PEAK_PLUGINS) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """(:func:`gemm_peaks` with the plug-ins' rates added, {engine: status}) for every engine the
    peaks look at: ``measured``, ``not installed`` or why it was not measured."""
    rates = gemm_peaks(size, repeats)
    status = {"numpy": MEASURED}
    for engine in ("onnxruntime", "openvino"):
        measured = any(engine in by_engine for by_engine in rates.values())
        status[engine] = MEASURED if measured else (NOT_INSTALLED if importlib.util.find_spec(engine) is None else "not measured")
    bf16 = cpu_info().bf16
    for name in plugins:
        found, status[name] = plugin_gemm_rates(name, size, repeats, bf16=bf16)
        for precision, rate in found.items():
            rates.setdefault(precision, {})[name] = rate
    return rates, status


__all__ = ["MEASURED", "NOT_INSTALLED", "PEAK_PLUGINS", "best", "best_engine", "engine_peaks", "gemm_peaks", "plugin_gemm_rates"]


if __name__ == "__main__":  # the child process of plugin_gemm_rates: NAME SIZE REPEATS bf16|no-bf16
    name, size_text, repeats_text, bf16_text = sys.argv[1:5]
    print(json.dumps(_plugin_child(name, int(size_text), int(repeats_text), bf16_text == "bf16")))
