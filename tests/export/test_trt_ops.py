"""The static TensorRT operator check rejects what TensorRT's ONNX parser cannot import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from salkit.base.errors import SalkitError
from salkit.export.trt_ops import OPS_FILE, check_graph, load_supported_ops

ROOT = Path(__file__).resolve().parents[2]


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _vi(name: str, shape=("B", 1, 8, 8), dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def test_vendored_op_list_equals_the_shared_copy() -> None:
    shared = ROOT.parent / "shared" / "tensorrt-onnx-ops.txt"
    if not shared.exists():
        pytest.skip(f"{shared} not present on this machine")
    assert (ROOT / "src" / "salkit" / "export" / OPS_FILE).read_text() == shared.read_text()


def test_op_list_parses_with_restrictions() -> None:
    ops = load_supported_ops()
    assert "Conv" in ops and ops["Conv"] == "weights must be an initializer"
    assert ops["Relu"] == ""
    assert "Bernoulli" not in ops and "LayerNormalization" not in ops
    assert len(ops) > 100


def test_graph_with_unsupported_operator_is_rejected() -> None:
    model = _model(
        [helper.make_node("Sigmoid", ["x"], ["p"], name="sig"), helper.make_node("Bernoulli", ["p"], ["y"], name="coin")],
        [_vi("x")], [_vi("y")],
    )
    onnx.checker.check_model(model)  # a valid ONNX graph, just not a TensorRT one
    with pytest.raises(SalkitError, match=r"graph 'sampler'.*node 'coin'.*Bernoulli"):
        check_graph(model, "sampler")


def test_supported_graph_passes_and_reports_its_ops() -> None:
    w = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        [_vi("x")], [_vi("y")], [w],
    )
    assert check_graph(model, "conv") == ["Conv", "Relu"]


def test_conv_with_runtime_weights_is_rejected() -> None:
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="dyn_conv", pads=[1, 1, 1, 1])],
                   [_vi("x"), _vi("w", (1, 1, 3, 3))], [_vi("y")])
    with pytest.raises(SalkitError, match=r"dyn_conv.*Conv.*weight input.*initializer"):
        check_graph(model, "g")


def test_quantized_weights_through_dequantize_count_as_initializers() -> None:
    wq = numpy_helper.from_array(np.ones((1, 1, 3, 3), np.int8), "wq")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    assert "DequantizeLinear" in check_graph(_model(nodes, [_vi("x")], [_vi("y")], [wq, scale, zero]), "q")
    nonzero = numpy_helper.from_array(np.array(3, np.int8), "z")
    with pytest.raises(SalkitError, match="x_zero_point must be a constant zero"):
        check_graph(_model(nodes, [_vi("x")], [_vi("y")], [wq, scale, nonzero]), "q")


def test_resize_mode_and_maxpool_indices_and_double_are_rejected() -> None:
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    cubic = _model([helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="cubic")],
                   [_vi("x")], [_vi("y")], [roi, scales])
    with pytest.raises(SalkitError, match="mode='cubic'"):
        check_graph(cubic, "resize")
    pool = _model([helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])],
                  [_vi("x")], [_vi("y"), _vi("idx", dtype=TensorProto.INT64)])
    with pytest.raises(SalkitError, match="Indices output"):
        check_graph(pool, "pool")
    d = numpy_helper.from_array(np.ones(1, np.float64), "d")
    double = _model([helper.make_node("Cast", ["d"], ["df"], to=TensorProto.FLOAT), helper.make_node("Add", ["x", "df"], ["y"])],
                    [_vi("x")], [_vi("y")], [d])
    with pytest.raises(SalkitError, match="float64"):
        check_graph(double, "dbl")


def test_unsupported_operator_inside_a_subgraph_is_found() -> None:
    body_then = helper.make_graph([helper.make_node("Bernoulli", ["x"], ["t"], name="inner_coin")], "then", [], [_vi("t")])
    body_else = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [_vi("e")])
    model = _model([helper.make_node("If", ["c"], ["y"], name="branch", then_branch=body_then, else_branch=body_else)],
                   [_vi("x"), _vi("c", (), TensorProto.BOOL)], [_vi("y")])
    with pytest.raises(SalkitError, match=r"inner_coin.*Bernoulli"):
        check_graph(model, "g")
