"""Static TensorRT-importability check for ONNX graphs.

No GPU is needed to know that a graph will fail to build: TensorRT's ONNX parser only imports the
operators in ``tensorrt_onnx_ops.txt`` (a vendored copy of the onnx-tensorrt support matrix) and
enforces a few restrictions per operator. :func:`check_graph` walks every node, including the
bodies of ``If``/``Loop``/``Scan``, and raises :class:`SalkitError` naming the graph, the node and
the operator for the first problems it finds.

"Initializer" restrictions accept values that the parser turns into weights anyway: initializers,
``Constant`` outputs, and the ``DequantizeLinear`` (optionally through ``QuantizeLinear``/``Cast``/
``Identity``) of such values, which is how explicit-quantization (Q/DQ) graphs carry weights.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from salkit.base.errors import SalkitError

OPS_FILE = "tensorrt_onnx_ops.txt"

# Element types TensorRT has no tensor type for (the parser refuses DOUBLE outright).
_UNSUPPORTED_DTYPES = {onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.COMPLEX64: "complex64",
                       onnx.TensorProto.COMPLEX128: "complex128", onnx.TensorProto.STRING: "string"}
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_WEIGHT_PASSTHROUGH = {"DequantizeLinear", "QuantizeLinear", "Cast", "Identity"}


def load_supported_ops(path: str | Path | None = None) -> dict[str, str]:
    """Parse the op list: ``{op_type: restriction text ('' when none)}``."""
    text = Path(path).read_text() if path else resources.files("salkit.export").joinpath(OPS_FILE).read_text()
    ops: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, restriction = line.partition("|")
        ops[name.strip()] = restriction.strip()
    return ops


@dataclasses.dataclass
class _GraphIndex:
    """What a restriction needs to know about a (sub)graph: constant values and their producers."""

    initializers: dict[str, onnx.TensorProto]
    producers: dict[str, onnx.NodeProto]
    outer: "_GraphIndex | None" = None

    @classmethod
    def of(cls, graph: onnx.GraphProto, outer: "_GraphIndex | None" = None) -> "_GraphIndex":
        inits = {t.name: t for t in graph.initializer}
        producers = {out: node for node in graph.node for out in node.output}
        return cls(inits, producers, outer)

    def constant_value(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The value of ``name`` if the parser can treat it as weights, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producers.get(name)
        if node is None:
            return self.outer.constant_value(name, depth) if self.outer else None
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_float", "value_int"):
                    return np.array(onnx.helper.get_attribute_value(attr))
                if attr.name in ("value_floats", "value_ints"):
                    return np.array(onnx.helper.get_attribute_value(attr))
            return None
        if node.op_type in _WEIGHT_PASSTHROUGH and depth < 4 and node.input:
            inner = self.constant_value(node.input[0], depth + 1)
            # The value after a Q/DQ chain is not needed by any check, only that it is constant.
            return inner
        return None

    def is_constant(self, name: str) -> bool:
        return self.constant_value(name) is not None


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node: onnx.NodeProto, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


# Each check returns a problem description, or None when the node satisfies the restriction.
Check = Callable[[onnx.NodeProto, _GraphIndex], "str | None"]


def _const_input(i: int, what: str) -> Check:
    def check(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
        name = _input(node, i)
        if name and not index.is_constant(name):
            return f"{what} ({name!r}) is computed at run time; TensorRT needs it as an initializer"
        return None

    return check


def _zero_point(i: int, what: str) -> Check:
    def check(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
        name = _input(node, i)
        if not name:
            return None
        value = index.constant_value(name)
        if value is None or np.any(value != 0):
            return f"{what} must be a constant zero (TensorRT supports symmetric quantization only)"
        return None

    return check


def _pool_rank(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
    kernel = _attr(node, "kernel_shape", [])
    return None if len(kernel) in (2, 3) else f"{len(kernel)}-D pooling (kernel_shape={list(kernel)}); only 2-D/3-D"


def _maxpool_indices(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
    return "the Indices output is used" if len(node.output) > 1 and node.output[1] else None


def _resize_modes(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
    mode = _attr(node, "mode", "nearest")
    coords = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in _RESIZE_MODES:
        return f"mode={mode!r} (supported: {sorted(_RESIZE_MODES)})"
    if coords not in _RESIZE_COORDINATES:
        return f"coordinate_transformation_mode={coords!r} (supported: {sorted(_RESIZE_COORDINATES)})"
    return None


def _einsum_equation(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
    equation = str(_attr(node, "equation", "")).replace(" ", "")
    if "..." in equation:
        return f"equation {equation!r} uses an ellipsis"
    for term in equation.split("->")[0].split(","):
        if len(set(term)) != len(term):
            return f"equation {equation!r} takes a diagonal ({term!r})"
    return None


def _if_branches(node: onnx.NodeProto, index: _GraphIndex) -> str | None:
    branches = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name in ("then_branch", "else_branch")]
    if len(branches) == 2:
        then_out = {o.name for o in branches[0].output}
        else_out = {o.name for o in branches[1].output}
        shared = then_out & else_out
        if shared:
            return f"then/else branches share output names {sorted(shared)}"
    return None


# Restriction text in the op list → the check enforcing it. Restrictions that are advice rather
# than a parse failure ("seed ignored") or only decidable with shapes map to None.
_RESTRICTION_CHECKS: dict[tuple[str, str], Check | None] = {
    ("Conv", "weights must be an initializer"): _const_input(1, "the weight input"),
    ("ConvTranspose", "weights must be an initializer"): _const_input(1, "the weight input"),
    ("CumSum", "axis must be an initializer"): _const_input(1, "the axis input"),
    ("DequantizeLinear", "x_zero_point must be zero"): _zero_point(2, "x_zero_point"),
    ("QuantizeLinear", "y_zero_point must be 0"): _zero_point(2, "y_zero_point"),
    ("AveragePool", "2D or 3D pooling only"): _pool_rank,
    ("MaxPool", "Indices output unsupported"): _maxpool_indices,
    ("Resize", "modes nearest/linear; coordinate modes half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, "
               "asymmetric, align_corners"): _resize_modes,
    ("Einsum", "no ellipsis, no diagonal, no broadcasting between inputs"): _einsum_equation,
    ("If", "branch outputs must have broadcastable shapes and different names"): _if_branches,
    ("InstanceNormalization", "scale and B must be initializers"): lambda n, i: (
        _const_input(1, "scale")(n, i) or _const_input(2, "B")(n, i)),
    ("Slice", "axes must be an initializer"): _const_input(3, "the axes input"),
    ("Squeeze", "axes must be an initializer"): _const_input(1, "the axes input"),
    ("Unsqueeze", "axes must be a constant"): _const_input(1, "the axes input"),
    ("TopK", "K must be an initializer"): _const_input(1, "K"),
    ("RandomNormal", "seed ignored"): None,
    ("RandomNormalLike", "seed ignored"): None,
    ("RandomUniform", "seed ignored"): None,
    ("RandomUniformLike", "seed ignored"): None,
    ("ReverseSequence", "static shapes only"): None,  # salkit graphs never use it; shapes are not inferred here
}


def _subgraphs(node: onnx.NodeProto) -> Iterable[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _walk(graph: onnx.GraphProto, ops: dict[str, str], where: str, outer: _GraphIndex | None,
          problems: list[str]) -> None:
    index = _GraphIndex.of(graph, outer)
    for tensor in graph.initializer:
        if tensor.data_type in _UNSUPPORTED_DTYPES:
            problems.append(f"{where}: initializer {tensor.name!r} is {_UNSUPPORTED_DTYPES[tensor.data_type]}, "
                            "which TensorRT has no type for")
    for position, node in enumerate(graph.node):
        label = f"{where}: node {node.name or '#' + str(position)!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{label}: operator {node.domain}::{node.op_type} is not a standard ONNX operator "
                            "(TensorRT would need a plugin)")
            continue
        if node.op_type not in ops:
            problems.append(f"{label}: operator {node.op_type} is not supported by TensorRT's ONNX parser")
            continue
        restriction = ops[node.op_type]
        if restriction:
            key = (node.op_type, restriction)
            if key not in _RESTRICTION_CHECKS:
                raise AssertionError(f"no check for restriction {key!r}: update _RESTRICTION_CHECKS")
            check = _RESTRICTION_CHECKS[key]
            problem = check(node, index) if check else None
            if problem:
                problems.append(f"{label}: operator {node.op_type}: {problem} (restriction: {restriction})")
        for sub in _subgraphs(node):
            _walk(sub, ops, f"{label}/{sub.name or 'body'}", index, problems)


def check_graph(model: onnx.ModelProto | str | Path, graph_name: str, ops: dict[str, str] | None = None) -> list[str]:
    """Raise SalkitError listing every node TensorRT could not import; return the op types used."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    ops = ops if ops is not None else load_supported_ops()
    problems: list[str] = []
    _walk(model.graph, ops, f"graph {graph_name!r}", None, problems)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; … and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SalkitError(f"graph {graph_name!r} cannot be built by TensorRT: {shown}")
    return sorted({node.op_type for node in _all_nodes(model.graph)})


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _all_nodes(sub)
