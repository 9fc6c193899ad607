"""A real server process with both listeners on 127.0.0.1 (fake predictor): unmodified
``tritonclient.grpc``, the size cap and the token over gRPC while the server keeps serving, and
SIGTERM draining both protocols. Every wait is bounded."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
tritongrpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.http as tritonhttp  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from google.protobuf import json_format  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tritonclient.utils import InferenceServerException  # noqa: E402 — after importorskip, so a host without gRPC skips the module

from tests.runtime.fake_predictor import SIZE, expected_saliency, expected_uint8_saliency  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tests.runtime.server_helpers import (  # noqa: E402 — after importorskip, so a host without gRPC skips the module
    AUTH,
    FAKE_SERVER,
    TOKEN,
    binary_request,
    decode_response,
    grpc_infer_request,
    grpc_outputs,
    live_server_grpc,
)

pytestmark = pytest.mark.timeout(180)
LIMIT = 64 * 1024


def _image_input(img: np.ndarray):
    image = tritongrpc.InferInput("IMAGE", list(img.shape), "UINT8")
    image.set_data_from_numpy(img)
    return image


def test_tritonclient_grpc_works_unmodified() -> None:
    with live_server_grpc([*FAKE_SERVER, "--token", TOKEN, "--max-body-bytes", str(LIMIT)]) as (_, url, address):
        client = tritongrpc.InferenceServerClient(address)
        http = tritonhttp.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)
        try:
            assert client.is_server_live() and client.is_server_ready()
            auth = {"authorization": f"Bearer {TOKEN}"}
            assert client.is_model_ready("saliency", headers=auth) and not client.is_model_ready("edges", headers=auth)
            assert "statistics" in client.get_server_metadata(headers=auth).extensions
            assert client.get_model_metadata("saliency", headers=auth).inputs[0].datatype == "UINT8"

            config = client.get_model_config("saliency", headers=auth).config
            assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("IMAGE", model_config_pb2.TYPE_FP32, [3, SIZE, SIZE])]
            assert config.max_batch_size == 8 and config.dynamic_batching.max_queue_delay_microseconds == 5000
            over_http = http.get_model_config("saliency", headers=dict(AUTH))
            assert json_format.ParseDict(over_http, model_config_pb2.ModelConfig()) == config  # the same config on both

            img = np.random.default_rng(0).integers(0, 256, (2, 21, 17, 3), dtype=np.uint8)
            result = client.infer("saliency", [_image_input(img)], headers=auth, parameters={"samples": 5, "steps": 2})
            np.testing.assert_allclose(result.as_numpy("SALIENCY"), expected_uint8_saliency(img, 5, 2), atol=1e-6)
            assert result.as_numpy("UNCERTAINTY").shape == (2, 3, 21, 17)
            x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
            fp32 = tritongrpc.InferInput("IMAGE", list(x.shape), "FP32")
            fp32.set_data_from_numpy(x)
            only = [tritongrpc.InferRequestedOutput("SALIENCY")]
            result = client.infer("saliency", [fp32], outputs=only, headers=auth, model_version="1")
            np.testing.assert_allclose(result.as_numpy("SALIENCY"), expected_saliency(x, 2, 3), atol=1e-6)
            assert result.as_numpy("UNCERTAINTY") is None

            stats = client.get_inference_statistics("saliency", headers=auth).model_stats[0]
            assert (stats.inference_count, stats.execution_count, stats.inference_stats.success.count) == (5, 2, 2)
            over_http = http.get_inference_statistics("saliency", headers=dict(AUTH))
            assert over_http["model_stats"][0]["inference_count"] == 5

            big = np.zeros((1, 160, 160, 3), np.uint8)  # 76800 bytes > the 64 KiB cap
            with pytest.raises(InferenceServerException) as caught:
                client.infer("saliency", [_image_input(big)], headers=auth)
            assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
            with pytest.raises(InferenceServerException) as caught:
                client.infer("saliency", [_image_input(img)], headers={"authorization": "Bearer nope"})
            assert caught.value.status() == "StatusCode.UNAUTHENTICATED" and "bearer token" in caught.value.message()
            with pytest.raises(InferenceServerException) as caught:
                client.infer("edges", [_image_input(img)], headers=auth)
            assert caught.value.status() == "StatusCode.NOT_FOUND"
            result = client.infer("saliency", [_image_input(img)], headers=auth)  # still serving
            np.testing.assert_allclose(result.as_numpy("SALIENCY"), expected_uint8_saliency(img), atol=1e-6)
            metrics = httpx.get(url + "/metrics", headers=AUTH, timeout=10).text
            assert 'salkit_grpc_requests_total{code="UNAUTHENTICATED",method="ModelInfer"} 1.0' in metrics
        finally:
            client.close()
            http.close()


def _in_flight(url: str, http: float, grpc_calls: float) -> bool:
    text = httpx.get(url + "/metrics", timeout=5).text  # itself counts as one HTTP request in flight
    return f"salkit_http_requests_in_flight {http + 1:.1f}" in text and f"salkit_grpc_requests_in_flight {grpc_calls:.1f}" in text


def test_sigterm_drains_both_listeners_and_exits_zero() -> None:
    with live_server_grpc([*FAKE_SERVER, "--delay", "3"]) as (proc, url, address):
        x = np.zeros((1, 3, SIZE, SIZE), np.float32)
        body, headers = binary_request([("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY"}])
        outcome: dict = {}

        def http_call() -> None:
            try:
                outcome["http"] = httpx.post(url + "/v2/models/saliency/infer", content=body, headers=headers, timeout=30)
            except Exception as err:
                outcome["http_error"] = err

        def grpc_call() -> None:
            try:
                with grpc.insecure_channel(address) as channel:
                    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                    outcome["grpc"] = stub.ModelInfer(grpc_infer_request([("IMAGE", x, "FP32")], outputs=["SALIENCY"]), timeout=30)
            except Exception as err:
                outcome["grpc_error"] = err

        callers = [threading.Thread(target=http_call), threading.Thread(target=grpc_call)]
        for caller in callers:
            caller.start()
        end = time.monotonic() + 10
        while not _in_flight(url, 1, 1):
            assert time.monotonic() < end, "the slow calls never reached the server"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        http_refused = grpc_refused = False
        end = time.monotonic() + 2.0
        while not (http_refused and grpc_refused) and time.monotonic() < end:  # both listeners close at once
            try:
                httpx.get(url + "/v2/health/live", timeout=1)
            except httpx.TransportError:
                http_refused = True
            with grpc.insecure_channel(address) as channel:
                try:
                    service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(service_pb2.ServerLiveRequest(), timeout=1)
                except grpc.RpcError as err:
                    grpc_refused = err.code() == grpc.StatusCode.UNAVAILABLE
            time.sleep(0.05)
        assert http_refused and grpc_refused and all(c.is_alive() for c in callers), "new calls must be refused while the slow ones run"
        for caller in callers:
            caller.join(30)
        assert proc.wait(30) == 0
    assert "http" in outcome and "grpc" in outcome, outcome
    assert outcome["http"].status_code == 200
    np.testing.assert_allclose(decode_response(outcome["http"].content, outcome["http"].headers)["SALIENCY"], expected_saliency(x, 2, 3))
    np.testing.assert_allclose(grpc_outputs(outcome["grpc"])["SALIENCY"], expected_saliency(x, 2, 3))
