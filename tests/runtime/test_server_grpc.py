"""KServe v2 over gRPC in-process (the app's lifespan runs the listener on 127.0.0.1, fake
predictor): health, metadata, infer with raw and typed contents, parameters, and every kind of
malformed call refused with its status code and one line while the server keeps serving."""

from __future__ import annotations

import threading

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402 — after importorskip, so a host without gRPC skips the module

from salkit.runtime.server.app import create_app  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tests.runtime.fake_predictor import SIZE, FakePredictor, expected_refine, expected_saliency, expected_uint8_saliency  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tests.runtime.server_helpers import GRPC_AUTH, TOKEN, grpc_infer_request, grpc_outputs, make_client, wait_ready  # noqa: E402 — after importorskip, so a host without gRPC skips the module

pytestmark = pytest.mark.timeout(120)
LIMIT = 256 * 1024
CODE = grpc.StatusCode


@pytest.fixture(scope="module")
def fake() -> FakePredictor:
    return FakePredictor()


@pytest.fixture(scope="module")
def stub(fake: FakePredictor):
    app = create_app(lambda: fake, max_batch_size=8, max_delay_ms=20, max_body_bytes=LIMIT, token=TOKEN, grpc_port=0)
    with make_client(app) as client:
        wait_ready(client)
        with grpc.insecure_channel(f"127.0.0.1:{app.state.salkit_grpc.port}") as channel:
            yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _image(n: int = 2, h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _infer(stub, message, metadata=GRPC_AUTH):
    return stub.ModelInfer(message, metadata=metadata, timeout=30)


def _good_call(stub) -> None:
    img = _image(1, seed=5)
    out = grpc_outputs(_infer(stub, grpc_infer_request([("IMAGE", img, "UINT8")], outputs=["SALIENCY"])))
    np.testing.assert_allclose(out["SALIENCY"], expected_uint8_saliency(img), atol=1e-6)


def test_health_metadata_and_ready(stub) -> None:
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live  # no token needed
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
    meta = stub.ServerMetadata(service_pb2.ServerMetadataRequest(), metadata=GRPC_AUTH, timeout=10)
    assert meta.name == "salkit" and {"model_configuration", "statistics", "binary_tensor_data"} <= set(meta.extensions)
    model = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="saliency"), metadata=GRPC_AUTH, timeout=10)
    assert (model.platform, list(model.versions)) == ("salkit_coop", ["1"])
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("IMAGE", "UINT8", [-1, -1, -1, 3])]
    assert [t.name for t in model.outputs] == ["SALIENCY", "UNCERTAINTY"]
    refine = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="refine", version="1"), metadata=GRPC_AUTH, timeout=10)
    assert [t.name for t in refine.inputs] == ["IMAGE", "MAP"]
    ready = stub.ModelReady(service_pb2.ModelReadyRequest(name="saliency"), metadata=GRPC_AUTH, timeout=10)
    unknown = stub.ModelReady(service_pb2.ModelReadyRequest(name="edges"), metadata=GRPC_AUTH, timeout=10)
    assert ready.ready and not unknown.ready  # Triton answers ready: false for a model it does not have


def test_raw_uint8_infer_with_parameters(stub, fake: FakePredictor) -> None:
    img = _image(2)
    message = grpc_infer_request([("IMAGE", img, "UINT8")], parameters={"samples": 4, "steps": 1})
    message.id = "r7"
    response = _infer(stub, message)
    assert (response.model_name, response.model_version, response.id) == ("saliency", "1", "r7")
    out = grpc_outputs(response)
    np.testing.assert_allclose(out["SALIENCY"], expected_uint8_saliency(img, 4, 1), atol=1e-6)
    assert out["UNCERTAINTY"].shape == (2, 3, 20, 24)
    assert fake.calls[-1][2] == {"samples": 4, "steps": 1, "noise": False, "uncertainty": True, "seed": None}
    noisy = grpc_infer_request([("IMAGE", img, "UINT8")], parameters={"noise": True, "seed": 3}, outputs=["SALIENCY"])
    assert set(grpc_outputs(_infer(stub, noisy))) == {"SALIENCY"}
    assert fake.calls[-1][2] == {"samples": 2, "steps": 3, "noise": True, "uncertainty": False, "seed": 3}


def test_typed_contents_fp32_and_uint8(stub) -> None:
    x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    typed = grpc_outputs(_infer(stub, grpc_infer_request([("IMAGE", x, "FP32")], raw=False, outputs=["SALIENCY"])))
    np.testing.assert_allclose(typed["SALIENCY"], expected_saliency(x, 2, 3), atol=1e-6)
    img = _image(1, 9, 11, seed=2)
    typed_u8 = grpc_outputs(_infer(stub, grpc_infer_request([("IMAGE", img, "UINT8")], raw=False)))
    np.testing.assert_allclose(typed_u8["SALIENCY"], expected_uint8_saliency(img), atol=1e-6)


def test_refine_over_grpc(stub) -> None:
    img = _image(2, 16, 16)
    maps = np.random.default_rng(2).random((2, 1, 16, 16)).astype(np.float32)
    message = grpc_infer_request([("IMAGE", img, "UINT8"), ("MAP", maps, "FP32")], model="refine", parameters={"steps": 5})
    np.testing.assert_allclose(grpc_outputs(_infer(stub, message))["MAP"], expected_refine(maps, 5), atol=1e-6)


def _bad_calls() -> list[tuple[str, object, tuple, grpc.StatusCode, str]]:
    img = _image(1)
    good = [("IMAGE", img, "UINT8")]
    nan = np.zeros((1, 3, SIZE, SIZE), np.float32)
    nan[0, 1, 2, 3] = np.nan

    def edited(edit, **kwargs):
        message = grpc_infer_request(kwargs.pop("inputs", good), **kwargs)
        edit(message)
        return message

    def shape(*dims: int):
        return lambda m: (m.inputs[0].ClearField("shape"), m.inputs[0].shape.extend(dims))

    absurd = (1, 2**40, 2**40, 3)
    return [
        ("unknown model", grpc_infer_request(good, model="edges"), GRPC_AUTH, CODE.NOT_FOUND, "unknown model 'edges'"),
        ("unknown version", grpc_infer_request(good, version="7"), GRPC_AUTH, CODE.NOT_FOUND, "no version '7'"),
        ("unknown datatype", edited(lambda m: setattr(m.inputs[0], "datatype", "FLOAT32")), GRPC_AUTH, CODE.INVALID_ARGUMENT, "unknown datatype 'FLOAT32'"),
        ("datatype the model refuses", grpc_infer_request([("IMAGE", img.astype(np.int32), "INT32")]), GRPC_AUTH, CODE.INVALID_ARGUMENT, "got datatype INT32"),
        ("raw shape mismatch", edited(shape(1, 20, 25, 3)), GRPC_AUTH, CODE.INVALID_ARGUMENT, "raw contents hold 1440 bytes but shape [1, 20, 25, 3] of UINT8 needs 1500"),
        ("typed shape mismatch", edited(shape(1, 20, 25, 3), raw=False), GRPC_AUTH, CODE.INVALID_ARGUMENT, "needs 1500 values, contents.uint_contents has 1440"),
        ("negative shape", edited(shape(1, -20, 24, 3)), GRPC_AUTH, CODE.INVALID_ARGUMENT, "non-negative sizes, got [1, -20, 24, 3]"),
        ("absurd shape raw", edited(shape(*absurd)), GRPC_AUTH, CODE.INVALID_ARGUMENT, "raw contents hold 1440 bytes"),
        ("absurd shape typed", edited(shape(*absurd), raw=False), GRPC_AUTH, CODE.INVALID_ARGUMENT, "contents.uint_contents has 1440"),
        ("no inputs", grpc_infer_request([]), GRPC_AUTH, CODE.INVALID_ARGUMENT, "needs at least one input"),
        ("missing input", grpc_infer_request(good, model="refine"), GRPC_AUTH, CODE.INVALID_ARGUMENT, "missing input(s) ['MAP']"),
        ("unknown input", grpc_infer_request([("PIXELS", img, "UINT8")]), GRPC_AUTH, CODE.INVALID_ARGUMENT, "unknown input(s) ['PIXELS']"),
        ("nameless input", edited(lambda m: setattr(m.inputs[0], "name", "")), GRPC_AUTH, CODE.INVALID_ARGUMENT, "inputs[0] needs a name"),
        ("raw count", edited(lambda m: m.raw_input_contents.append(b"xx")), GRPC_AUTH, CODE.INVALID_ARGUMENT, "2 raw_input_contents for 1 inputs"),
        ("raw and typed", edited(lambda m: m.inputs[0].contents.uint_contents.extend([1, 2])), GRPC_AUTH, CODE.INVALID_ARGUMENT, "both typed contents and raw"),
        ("typed in the wrong field", edited(lambda m: (m.inputs[0].contents.ClearField("uint_contents"), m.inputs[0].contents.fp32_contents.extend([0.5] * 1440)), raw=False), GRPC_AUTH, CODE.INVALID_ARGUMENT, "UINT8 values go in contents.uint_contents, got fp32_contents"),
        ("pixel out of range", edited(lambda m: m.inputs[0].contents.uint_contents.__setitem__(7, 300), raw=False), GRPC_AUTH, CODE.INVALID_ARGUMENT, "values must be in [0, 255], got 300"),
        ("typed FP16", edited(lambda m: setattr(m.inputs[0], "datatype", "FP16"), raw=False), GRPC_AUTH, CODE.INVALID_ARGUMENT, "FP16 has no typed contents field"),
        ("BYTES", edited(lambda m: setattr(m.inputs[0], "datatype", "BYTES")), GRPC_AUTH, CODE.INVALID_ARGUMENT, "BYTES tensors are not accepted"),
        ("empty image", grpc_infer_request([("IMAGE", np.zeros((0, 20, 24, 3), np.uint8), "UINT8")]), GRPC_AUTH, CODE.INVALID_ARGUMENT, "B, H, W >= 1"),
        ("NaN", grpc_infer_request([("IMAGE", nan, "FP32")]), GRPC_AUTH, CODE.INVALID_ARGUMENT, "1 NaN/inf values"),
        ("wrong FP32 layout", grpc_infer_request([("IMAGE", np.zeros((1, 3, 8, 8), np.float32), "FP32")]), GRPC_AUTH, CODE.INVALID_ARGUMENT, f"[B, 3, {SIZE}, {SIZE}]"),
        ("unknown output", grpc_infer_request(good, outputs=["EDGES"]), GRPC_AUTH, CODE.INVALID_ARGUMENT, "no output(s) ['EDGES']"),
        ("bad parameter", grpc_infer_request(good, parameters={"samples": 0}), GRPC_AUTH, CODE.INVALID_ARGUMENT, "'samples' must be an integer in [1, 64]"),
        ("string parameter", grpc_infer_request(good, parameters={"seed": "x"}), GRPC_AUTH, CODE.INVALID_ARGUMENT, "'seed' must be an integer"),
        ("over the size cap", grpc_infer_request([("IMAGE", _image(1, 320, 320), "UINT8")]), GRPC_AUTH, CODE.RESOURCE_EXHAUSTED, "larger than max"),
        ("missing token", grpc_infer_request(good), (), CODE.UNAUTHENTICATED, "bearer token"),
        ("wrong token", grpc_infer_request(good), (("authorization", "Bearer nope"),), CODE.UNAUTHENTICATED, "bearer token"),
        ("wrong scheme", grpc_infer_request(good), (("authorization", f"Basic {TOKEN}"),), CODE.UNAUTHENTICATED, "bearer token"),
        ("token checked before the model", grpc_infer_request(good, model="edges"), (), CODE.UNAUTHENTICATED, "bearer token"),
    ]  # fmt: skip


@pytest.mark.parametrize(("name", "message", "metadata", "code", "reason"), _bad_calls(), ids=[b[0] for b in _bad_calls()])
def test_bad_call_gets_status_and_one_line_and_server_keeps_serving(stub, name, message, metadata, code, reason) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _infer(stub, message, metadata)
    assert caught.value.code() == code, (caught.value.code(), caught.value.details())
    assert reason in caught.value.details() and "\n" not in caught.value.details(), caught.value.details()
    _good_call(stub)


def test_other_calls_need_the_token_but_health_does_not(stub) -> None:
    for call, request in [
        (stub.ServerMetadata, service_pb2.ServerMetadataRequest()),
        (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="saliency")),
        (stub.ModelConfig, service_pb2.ModelConfigRequest(name="saliency")),
        (stub.ModelStatistics, service_pb2.ModelStatisticsRequest(name="saliency")),
        (stub.ModelReady, service_pb2.ModelReadyRequest(name="saliency")),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=10)
        assert caught.value.code() == CODE.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="edges"), metadata=GRPC_AUTH, timeout=10)
    assert caught.value.code() == CODE.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:  # not part of salkit: the generated base class answers
        stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), metadata=GRPC_AUTH, timeout=10)
    assert caught.value.code() == CODE.UNIMPLEMENTED


def test_unavailable_until_loaded() -> None:
    release = threading.Event()
    fake = FakePredictor()

    def slow_load() -> FakePredictor:
        assert release.wait(10)
        return fake

    app = create_app(slow_load, grpc_port=0)
    with make_client(app) as client:
        with grpc.insecure_channel(f"127.0.0.1:{app.state.salkit_grpc.port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
            assert not stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
            with pytest.raises(grpc.RpcError) as caught:
                _infer(stub, grpc_infer_request([("IMAGE", _image(1), "UINT8")]), ())
            assert caught.value.code() == CODE.UNAVAILABLE and "loading" in caught.value.details()
            assert not stub.ModelReady(service_pb2.ModelReadyRequest(name="saliency"), timeout=10).ready
            release.set()
            wait_ready(client)
            assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
            _good_call_no_token(stub)


def _good_call_no_token(stub) -> None:
    img = _image(1, seed=5)
    out = grpc_outputs(_infer(stub, grpc_infer_request([("IMAGE", img, "UINT8")], outputs=["SALIENCY"]), ()))
    np.testing.assert_allclose(out["SALIENCY"], expected_uint8_saliency(img), atol=1e-6)
