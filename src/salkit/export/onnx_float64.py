"""Run an exported graph in float64 with torch operators: the graph's own nodes and weights, without
float32 rounding (ONNX Runtime's CPU Conv runs float32 only; ONNX's reference evaluator took 20 s
per 352² energy evaluation on this machine, torch float64 about a tenth of that).

Only the operators the energy graphs are made of are known; :func:`float64_graph` returns None for
a graph with any other, and the caller then falls back to the float64 torch module.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

Op = Callable[..., torch.Tensor]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(node: onnx.NodeProto, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    a = _attrs(node)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("auto_pad")
    pads = list(a.get("pads", [0] * 4))  # [top, left, bottom, right]
    x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    return F.conv2d(x, w, b, tuple(a.get("strides", (1, 1))), 0, tuple(a.get("dilations", (1, 1))), a.get("group", 1))


def _gemm(node: onnx.NodeProto, x: torch.Tensor, w: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    a = _attrs(node)
    x = x.T if a.get("transA", 0) else x
    w = w.T if a.get("transB", 0) else w
    out = a.get("alpha", 1.0) * (x @ w)
    return out if c is None else out + a.get("beta", 1.0) * c


def _reduce_sum(node: onnx.NodeProto, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
    a = _attrs(node)
    if axes is None or axes.numel() == 0:
        keep = [1] * x.dim() if a.get("keepdims", 1) else []  # all axes reduced: (1, …, 1) or a scalar
        return x if a.get("noop_with_empty_axes", 0) else x.sum().reshape(keep)
    return x.sum(dim=[int(i) for i in axes.tolist()], keepdim=bool(a.get("keepdims", 1)))


def _batch_norm(node: onnx.NodeProto, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, _attrs(node).get("epsilon", 1e-5))


def _flatten(node: onnx.NodeProto, x: torch.Tensor) -> torch.Tensor:
    axis = _attrs(node).get("axis", 1) % (x.dim() + 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)  # (∏ leading axes, ∏ the rest)


OPS: dict[str, Op] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "ReduceSum": _reduce_sum,
    "BatchNormalization": _batch_norm,
    "Relu": lambda node, x: torch.relu(x),
    "LeakyRelu": lambda node, x: F.leaky_relu(x, _attrs(node).get("alpha", 0.01)),
    "Sigmoid": lambda node, x: torch.sigmoid(x),
    "Neg": lambda node, x: -x,
    "Add": lambda node, x, y: x + y,
    "Sub": lambda node, x, y: x - y,
    "Mul": lambda node, x, y: x * y,
    "MatMul": lambda node, x, y: x @ y,
    "Identity": lambda node, x: x,
    "Concat": lambda node, *xs: torch.cat(xs, dim=_attrs(node)["axis"]),
    "Flatten": _flatten,
    "Reshape": lambda node, x, shape: x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape.tolist())]),
}


def float64_graph(model: onnx.ModelProto) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]] | None:
    """A float64 function of the graph's inputs (by name) → its outputs, or None if it uses an
    operator this module does not know."""
    graph = model.graph
    if any(node.op_type not in OPS and node.op_type != "Constant" or node.domain not in ("", "ai.onnx")
           for node in graph.node):
        return None
    weights = {t.name: _float64(torch.from_numpy(numpy_helper.to_array(t).copy())) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = _attrs(node).get("value")
            if value is None:
                return None  # value_float(s)/value_int(s) constants: not produced by these exporters
            weights[node.output[0]] = _float64(torch.from_numpy(numpy_helper.to_array(value).copy()))
    nodes = [node for node in graph.node if node.op_type != "Constant"]
    outputs = [o.name for o in graph.output]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = dict(weights)
        values.update({name: _float64(torch.from_numpy(np.asarray(a))) for name, a in feeds.items()})
        with torch.no_grad():
            for node in nodes:
                args = [values[name] if name else None for name in node.input]
                values[node.output[0]] = OPS[node.op_type](node, *args)
        return [values[name].numpy() for name in outputs]

    return run


def _float64(t: torch.Tensor) -> torch.Tensor:
    return t.double() if t.is_floating_point() else t
