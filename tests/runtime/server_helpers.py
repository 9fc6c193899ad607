"""Helpers for the server tests: an in-process client on a fake predictor, v2 request builders,
and a real uvicorn server in a subprocess on 127.0.0.1 (bounded start-up and shutdown)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from salkit.runtime.server.launch import free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(app: Any):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's notice about httpx vs httpx2
        from starlette.testclient import TestClient

        return TestClient(app, raise_server_exceptions=False)


def wait_ready(client: Any, timeout: float = 20.0, headers: dict | None = None) -> None:
    end = time.monotonic() + timeout
    while client.get("/v2/health/ready", headers=headers).status_code != 200:
        assert time.monotonic() < end, "server did not become ready"
        time.sleep(0.01)


def json_tensor(name: str, array: np.ndarray, datatype: str) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.reshape(-1).tolist()}


def binary_request(
    inputs: list[tuple[str, np.ndarray, str]], outputs: list[dict] | None = None, parameters: dict | None = None
) -> tuple[bytes, dict]:
    """A v2 request with every input in the binary extension; returns (body, headers)."""
    head: dict = {
        "inputs": [
            {"name": n, "datatype": dt, "shape": list(a.shape), "parameters": {"binary_data_size": a.nbytes}} for n, a, dt in inputs
        ]
    }
    if outputs is not None:
        head["outputs"] = outputs
    if parameters:
        head["parameters"] = parameters
    text = json.dumps(head).encode()
    body = text + b"".join(np.ascontiguousarray(a).tobytes() for _, a, _ in inputs)
    return body, {"Inference-Header-Content-Length": str(len(text)), "Content-Type": "application/octet-stream"}


def decode_response(content: bytes, headers: Any) -> dict[str, np.ndarray]:
    """Parse a v2 response (JSON or binary) into name → array, independently of the server code."""
    dtypes = {"FP32": np.float32, "FP64": np.float64, "UINT8": np.uint8, "INT64": np.int64}
    length = headers.get("Inference-Header-Content-Length")
    head = json.loads(content[: int(length)] if length else content)
    offset = int(length) if length else 0
    out = {}
    for entry in head["outputs"]:
        dtype = dtypes[entry["datatype"]]
        if "data" in entry:
            out[entry["name"]] = np.asarray(entry["data"], dtype=dtype).reshape(entry["shape"])
        else:
            size = entry["parameters"]["binary_data_size"]
            out[entry["name"]] = np.frombuffer(content[offset : offset + size], dtype=dtype).reshape(entry["shape"])
            offset += size
    assert offset == len(content) or not length
    return out


FAKE_SERVER = [sys.executable, "-m", "tests.runtime.serve_fake"]
SAL_RUNTIME = str(Path(sys.executable).with_name("sal-runtime"))


@contextlib.contextmanager
def live_server(command: list[str], *, ready_timeout: float = 60.0, env: dict | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start ``command --port N`` (a server on 127.0.0.1), wait until /v2/health/ready, yield (proc, url)."""
    proc, url = start_server(
        command, ready_timeout, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    try:
        yield proc, url
    finally:
        stop_server(proc)


@contextlib.contextmanager
def live_server_grpc(command: list[str], **kwargs: Any) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """live_server with ``--grpc-port M`` too; yields (proc, http url, gRPC address host:port)."""
    grpc_port = free_port()
    with live_server([*command, "--grpc-port", str(grpc_port)], **kwargs) as (proc, url):
        yield proc, url, f"127.0.0.1:{grpc_port}"


GRPC_AUTH = (("authorization", f"Bearer {TOKEN}"),)
TYPED_FIELD = {"UINT8": "uint_contents", "FP32": "fp32_contents", "INT32": "int_contents", "FP64": "fp64_contents"}


def grpc_infer_request(
    inputs: list[tuple[str, np.ndarray, str]],
    *,
    model: str = "saliency",
    raw: bool = True,
    parameters: dict | None = None,
    outputs: list[str] | None = None,
    version: str = "",
):
    """A v2 gRPC request built by hand: raw_input_contents, or typed contents when ``raw`` is False."""
    from tritonclient.grpc import service_pb2

    message = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, array, datatype in inputs:
        tensor = message.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            message.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
        else:
            getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.reshape(-1).tolist())
    for key, value in (parameters or {}).items():
        field = {bool: "bool_param", int: "int64_param", float: "double_param", str: "string_param"}[type(value)]
        setattr(message.parameters[key], field, value)
    for name in outputs or []:
        message.outputs.add(name=name)
    return message


def grpc_outputs(response: Any) -> dict[str, np.ndarray]:
    """A ModelInferResponse's raw outputs as name → array, decoded here, not by the server's code."""
    dtypes = {"FP32": np.float32, "FP64": np.float64, "UINT8": np.uint8}
    assert len(response.raw_output_contents) == len(response.outputs)
    return {
        out.name: np.frombuffer(raw, dtype=dtypes[out.datatype]).reshape(list(out.shape))
        for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
