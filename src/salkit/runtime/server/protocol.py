"""KServe v2 / Open Inference Protocol tensors: JSON and the binary tensor data extension.

An inference request body is a JSON header, optionally followed by raw tensor bytes when the
``Inference-Header-Content-Length`` HTTP header gives the JSON's length (Triton's binary data
extension, which ``tritonclient.http`` uses by default). An input carries either ``data`` (a flat
or nested row-major JSON list) or ``parameters.binary_data_size`` (its bytes follow the header, in
input order, little-endian). Outputs come back as JSON ``data`` unless the request asks for binary
with ``outputs[i].parameters.binary_data`` or the request-level ``parameters.binary_data_output``.

Everything malformed raises :class:`ProtocolError` (HTTP 400) with a reason. No web framework here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError

HEADER_LENGTH = "Inference-Header-Content-Length"

# KServe v2 datatype strings ↔ little-endian numpy dtypes. BYTES (length-prefixed strings) is
# part of the protocol, but no salkit model takes strings, so it is refused with a reason.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_NAMES_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items()}


class ProtocolError(SalkitError):
    """A request the protocol (or the model) cannot accept; ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class InferRequest:
    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]  # name → array with the request's shape and datatype
    datatypes: dict[str, str]  # name → the datatype string the client sent
    outputs: dict[str, bool] | None  # requested output → binary?; None: all outputs
    binary_default: bool  # request-level binary_data_output


def datatype_of(array: np.ndarray) -> str:
    try:
        return _NAMES_BY_DTYPE[array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype]
    except KeyError:
        raise TypeError(f"no KServe v2 datatype for numpy dtype {array.dtype}") from None


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def _parse_json(text: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProtocolError(f"request is not valid JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("request JSON is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"request must be a JSON object, got {type(obj).__name__}")
    return obj


def _parameters(obj: Any, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ProtocolError(f"{where} parameters must be a JSON object, got {type(obj).__name__}")
    return obj


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise ProtocolError(f"input {name!r}: shape must be a list of non-negative integers, got {raw!r}")
    return tuple(raw)


def _from_json_data(data: Any, name: str, datatype: str, shape: tuple[int, ...], budget: int) -> np.ndarray:
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    if count > budget:  # every JSON element takes at least one byte: this cannot match
        raise ProtocolError(f"input {name!r}: shape {list(shape)} needs {count} values, far more than the request holds")
    if not isinstance(data, list):
        data = [data]
    try:
        values = np.array(data, dtype=object if datatype == "BOOL" else None)
    except (ValueError, TypeError) as err:
        raise ProtocolError(f"input {name!r}: data is not a regular nested list ({err})") from None
    flat = values.reshape(-1)
    if flat.size != count:
        raise ProtocolError(
            f"input {name!r}: shape {list(shape)} needs {count} values, data has {flat.size}"
        )
    if datatype == "BOOL":
        if not all(isinstance(v, bool) for v in flat):
            raise ProtocolError(f"input {name!r}: BOOL data must be true/false")
        return flat.astype(bool).reshape(shape)
    if flat.dtype.kind not in "iuf" or flat.dtype == object:
        raise ProtocolError(f"input {name!r}: {datatype} data must be numbers, got {flat.dtype.name} values")
    if dtype.kind in "iu":
        as_float = flat.astype(np.float64)
        bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
        info = np.iinfo(dtype)
        bad |= (as_float < info.min) | (as_float > info.max)
        if bad.any():
            first = flat[np.argmax(bad)]
            raise ProtocolError(f"input {name!r}: {datatype} data must be integers in [{info.min}, {info.max}], got {first!r}")
    return flat.astype(dtype).reshape(shape)


def parse_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """Decode a v2 inference request body (JSON, or JSON + binary tensors)."""
    head, binary = _split_body(body, header_length)
    obj = _parse_json(head)
    params = _parameters(obj.get("parameters"), "request")
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for index, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise ProtocolError(f"inputs[{index}] must be a JSON object")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"inputs[{index}] needs a string 'name'")
        if name in inputs:
            raise ProtocolError(f"input {name!r} is given twice")
        datatype = raw.get("datatype")
        if datatype == "BYTES":
            raise ProtocolError(f"input {name!r}: BYTES tensors are not accepted (send numbers, e.g. UINT8 pixels)")
        if datatype not in DATATYPES:
            raise ProtocolError(f"input {name!r}: unknown datatype {datatype!r} (one of {', '.join(DATATYPES)})")
        shape = _shape(raw.get("shape"), name)
        in_params = _parameters(raw.get("parameters"), f"input {name!r}")
        size = in_params.get("binary_data_size")
        if size is not None:
            if "data" in raw:
                raise ProtocolError(f"input {name!r} has both 'data' and binary_data_size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
            expected = math.prod(shape) * DATATYPES[datatype].itemsize
            if size != expected:
                raise ProtocolError(
                    f"input {name!r}: binary_data_size {size} does not match shape {list(shape)} of {datatype} ({expected} bytes)"
                )
            if offset + size > len(binary):
                raise ProtocolError(
                    f"input {name!r}: binary data ends at byte {offset + size} but only {len(binary)} bytes follow the JSON header"
                )
            array = np.frombuffer(binary[offset : offset + size], dtype=DATATYPES[datatype]).reshape(shape)
            offset += size
        elif "data" in raw:
            array = _from_json_data(raw["data"], name, datatype, shape, max(len(head), 1))
        else:
            raise ProtocolError(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        inputs[name] = array
        datatypes[name] = datatype
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data follow the JSON header that no input claims")
    outputs = None
    if "outputs" in obj:
        raw_outputs = obj["outputs"]
        if not isinstance(raw_outputs, list):
            raise ProtocolError("'outputs' must be a list")
        outputs = {}
        for index, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise ProtocolError(f"outputs[{index}] must be an object with a string 'name'")
            out_params = _parameters(raw.get("parameters"), f"output {raw['name']!r}")
            outputs[raw["name"]] = out_params.get("binary_data")
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise ProtocolError(f"binary_data_output must be true or false, got {binary_default!r}")
    if outputs is not None:
        outputs = {k: binary_default if v is None else bool(v) for k, v in outputs.items()}
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"request 'id' must be a string, got {request_id!r}")
    return InferRequest(request_id, params, inputs, datatypes, outputs, binary_default)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in outputs.items():
        array = np.ascontiguousarray(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        binary = request.binary_default if request.outputs is None else request.outputs[name]
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request.id is not None:
        response["id"] = request.id
    head = json.dumps(response, allow_nan=False).encode()
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)
