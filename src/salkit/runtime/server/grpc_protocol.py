"""KServe v2 gRPC messages ↔ the server's tensors, on the protocol's published definition.

The messages are the generated classes that ``tritonclient`` ships (``tritonclient.grpc.service_pb2``
and ``model_config_pb2``, compiled from Triton's ``grpc_service.proto`` and ``model_config.proto``).

A ``ModelInferRequest`` input carries its values either in ``raw_input_contents`` (one bytes
entry per input, in input order, little-endian row-major; what ``tritonclient.grpc`` sends) or
typed in ``contents`` (``fp32_contents`` for FP32, ``uint_contents`` for UINT8/16/32, …); a
request uses one way for all its inputs. FP16 goes raw only (there is no typed field for it);
BYTES is refused as on HTTP. Request parameters (``seed``, ``samples``, ``steps``, ``noise``) are
``InferParameter`` values read as on HTTP. Outputs always come back in ``raw_output_contents``,
as Triton answers. Every malformed request raises :class:`ProtocolError` before any array the size
of a claimed shape is allocated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2

from salkit.runtime.server.protocol import DATATYPES, InferRequest, ProtocolError, datatype_of

# Typed contents: the field for each datatype and the range narrower integers must fit.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
_ALL_FIELDS = sorted(set(CONTENTS_FIELD.values()) | {"bytes_contents"})


def parameter_value(parameter: Any) -> Any:
    """An ``InferParameter``'s value as a Python bool, int, float or str (None when unset)."""
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)


def _parameters(entries: Any) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in entries.items()}


def _shape(tensor: Any) -> tuple[int, ...]:
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise ProtocolError(f"input {tensor.name!r}: shape must hold non-negative sizes, got {list(shape)}")
    return shape


def _from_raw(tensor: Any, datatype: str, shape: tuple[int, ...], data: bytes) -> np.ndarray:
    if tensor.HasField("contents") and any(len(getattr(tensor.contents, f)) for f in _ALL_FIELDS):
        raise ProtocolError(f"input {tensor.name!r} has both typed contents and raw_input_contents")
    dtype = DATATYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: an absurd shape cannot overflow
    if len(data) != expected:
        raise ProtocolError(
            f"input {tensor.name!r}: raw contents hold {len(data)} bytes but shape {list(shape)} of {datatype} needs {expected}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _from_typed(tensor: Any, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ProtocolError(f"input {tensor.name!r}: {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    stray = [f for f in _ALL_FIELDS if f != field and len(getattr(tensor.contents, f))]
    if stray:
        raise ProtocolError(f"input {tensor.name!r}: {datatype} values go in contents.{field}, got {', '.join(stray)}")
    count = math.prod(shape)
    if len(values) != count:
        raise ProtocolError(f"input {tensor.name!r}: shape {list(shape)} needs {count} values, contents.{field} has {len(values)}")
    dtype = DATATYPES[datatype]
    if dtype.kind in "iu" and dtype.itemsize < 4 and count:
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(dtype)
        bad = (wide < info.min) | (wide > info.max)
        if bad.any():
            raise ProtocolError(f"input {tensor.name!r}: {datatype} values must be in [{info.min}, {info.max}], got {int(wide[np.argmax(bad)])}")
        return wide.astype(dtype).reshape(shape)
    return np.asarray(values, dtype=dtype).reshape(shape)


def decode_infer_request(message: Any) -> InferRequest:
    """A ``ModelInferRequest`` as the server's :class:`InferRequest`."""
    if not message.inputs:
        raise ProtocolError("request needs at least one input")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise ProtocolError(
            f"request has {len(raw)} raw_input_contents for {len(message.inputs)} inputs: send one per input, or typed contents for all"
        )
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if not name:
            raise ProtocolError(f"inputs[{index}] needs a name")
        if name in inputs:
            raise ProtocolError(f"input {name!r} is given twice")
        datatype = tensor.datatype
        if datatype == "BYTES":
            raise ProtocolError(f"input {name!r}: BYTES tensors are not accepted (send numbers, e.g. UINT8 pixels)")
        if datatype not in DATATYPES:
            raise ProtocolError(f"input {name!r}: unknown datatype {datatype!r} (one of {', '.join(DATATYPES)})")
        shape = _shape(tensor)
        inputs[name] = _from_raw(tensor, datatype, shape, raw[index]) if raw else _from_typed(tensor, datatype, shape)
        datatypes[name] = datatype
    outputs = {o.name: True for o in message.outputs} if message.outputs else None
    if outputs is not None and len(outputs) != len(message.outputs):
        raise ProtocolError("an output is requested twice")
    return InferRequest(message.id or None, _parameters(message.parameters), inputs, datatypes, outputs, True)


def encode_infer_response(model_name: str, model_version: str, request: InferRequest, outputs: dict[str, np.ndarray]) -> Any:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``."""
    response = service_pb2.ModelInferResponse(model_name=model_name, model_version=model_version, id=request.id or "")
    for name, array in outputs.items():
        array = np.ascontiguousarray(array)
        response.outputs.add(name=name, datatype=datatype_of(array), shape=list(array.shape))
        response.raw_output_contents.append(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return response


def model_metadata(meta: dict[str, Any]) -> Any:
    """The HTTP model metadata dict as a ``ModelMetadataResponse``."""
    return json_format.ParseDict(meta, service_pb2.ModelMetadataResponse())


def model_config(config: dict[str, Any]) -> Any:
    """A Triton JSON model config (salkit.runtime.server.model_config) as a ``ModelConfigResponse``."""
    return service_pb2.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))


def model_statistics(stats: dict[str, Any]) -> Any:
    """``{"model_stats": [...]}`` (salkit.runtime.server.stats) as a ``ModelStatisticsResponse``."""
    return json_format.ParseDict(stats, service_pb2.ModelStatisticsResponse())
