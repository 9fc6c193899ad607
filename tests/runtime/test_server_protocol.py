"""The server in-process on a fake predictor: KServe v2 (JSON + binary), /predict, errors, auth,
limits, readiness, metrics and batching under concurrent requests."""

from __future__ import annotations

import concurrent.futures
import gzip
import io
import json
import math
import re
import threading

import numpy as np
import pytest
from PIL import Image

from salkit.base import images
from salkit.base.errors import SalkitError
from salkit.runtime.server.app import create_app
from tests.runtime.fake_predictor import SIZE, FakePredictor, entropy, expected_refine, expected_saliency, expected_uint8_saliency, make_manifest
from tests.runtime.server_helpers import AUTH, TOKEN, binary_request, decode_response, json_tensor, make_client, wait_ready

pytestmark = pytest.mark.timeout(120)
LIMIT = 256 * 1024
INFER = "/v2/models/saliency/infer"


@pytest.fixture(scope="module")
def fake() -> FakePredictor:
    return FakePredictor()


@pytest.fixture(scope="module")
def client(fake: FakePredictor):
    app = create_app(lambda: fake, max_batch_size=8, max_delay_ms=20, max_body_bytes=LIMIT, token=TOKEN)
    with make_client(app) as c:
        wait_ready(c)
        yield c


def _image(n: int = 2, h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


_reference = expected_uint8_saliency


def _good_request(client) -> None:
    img = _image(1, seed=5)
    r = client.post(INFER, json={"inputs": [json_tensor("IMAGE", img, "UINT8")], "outputs": [{"name": "SALIENCY"}]}, headers=AUTH)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(decode_response(r.content, r.headers)["SALIENCY"], _reference(img), atol=1e-6)


def test_health_and_metadata(client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2", headers=AUTH).json()
    assert meta["name"] == "salkit" and "binary_tensor_data" in meta["extensions"]
    sal = client.get("/v2/models/saliency", headers=AUTH).json()
    assert [t["name"] for t in sal["inputs"]] == ["IMAGE"] and [t["name"] for t in sal["outputs"]] == ["SALIENCY", "UNCERTAINTY"]
    assert client.get("/v2/models/refine/versions/1", headers=AUTH).json()["outputs"][0]["name"] == "MAP"
    assert client.get("/v2/models/saliency/ready", headers=AUTH).json()["ready"] is True
    assert client.get("/v2/models/saliency/config", headers=AUTH).json()["max_batch_size"] == 8
    missing = client.get("/v2/models/nope", headers=AUTH)
    assert missing.status_code == 404 and "unknown model 'nope'" in missing.json()["error"]
    version = client.get("/v2/models/saliency/versions/7/ready", headers=AUTH)
    assert version.status_code == 404 and "no version '7'" in version.json()["error"]
    assert client.get("/no/such/route", headers=AUTH).status_code == 404


def test_json_uint8_infer_matches_reference(client) -> None:
    img = _image(2)
    body = {"id": "r1", "inputs": [json_tensor("IMAGE", img, "UINT8")], "parameters": {"samples": 4, "steps": 1}}
    r = client.post(INFER, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "r1" and r.json()["model_name"] == "saliency"
    out = decode_response(r.content, r.headers)
    assert out["SALIENCY"].shape == (2, 1, 20, 24) and out["UNCERTAINTY"].shape == (2, 3, 20, 24)
    np.testing.assert_allclose(out["SALIENCY"], _reference(img, 4, 1), atol=1e-6)
    manifest = make_manifest()
    x = images.preprocess(list(img), SIZE, manifest.mean, manifest.std)
    h = entropy(expected_saliency(x, 4, 1))
    for channel, scale in enumerate((1.0, 0.75, 0.25)):
        want = np.stack([images.resize_map(scale * h[i, 0], (20, 24)) for i in range(2)])
        np.testing.assert_allclose(out["UNCERTAINTY"][:, channel], want, atol=1e-5)


def test_binary_fp32_infer_with_binary_and_json_outputs(client, fake: FakePredictor) -> None:
    x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    calls = len(fake.calls)
    body, headers = binary_request(
        [("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY", "parameters": {"binary_data": True}}, {"name": "UNCERTAINTY"}]
    )
    r = client.post(INFER, content=body, headers={**headers, **AUTH})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header = json.loads(r.content[: int(r.headers["Inference-Header-Content-Length"])])
    assert "binary_data_size" in header["outputs"][0]["parameters"] and "data" in header["outputs"][1]
    out = decode_response(r.content, r.headers)
    np.testing.assert_array_equal(out["SALIENCY"], expected_saliency(x, 2, 3))
    assert out["UNCERTAINTY"].shape == (3, 3, SIZE, SIZE)
    # Leaving UNCERTAINTY out of the outputs means the predictor is not asked for it.
    body, headers = binary_request([("IMAGE", x, "FP32")], parameters={"binary_data_output": True}, outputs=[{"name": "SALIENCY"}])
    r = client.post(INFER, content=body, headers={**headers, **AUTH})
    assert set(decode_response(r.content, r.headers)) == {"SALIENCY"}
    assert fake.calls[-1][2]["uncertainty"] is False and len(fake.calls) == calls + 2


def test_gzip_request_body(client) -> None:
    img = _image(1)
    raw = json.dumps({"inputs": [json_tensor("IMAGE", img, "UINT8")], "outputs": [{"name": "SALIENCY"}]}).encode()
    r = client.post(INFER, content=gzip.compress(raw), headers={**AUTH, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(decode_response(r.content, r.headers)["SALIENCY"], _reference(img), atol=1e-6)


def test_refine_model(client) -> None:
    img = _image(2, 16, 16)  # already S×S: MAP passes through unresized
    maps = np.random.default_rng(2).random((2, 1, 16, 16)).astype(np.float32)
    body = {"inputs": [json_tensor("IMAGE", img, "UINT8"), json_tensor("MAP", maps, "FP32")], "parameters": {"steps": 5}}
    r = client.post("/v2/models/refine/infer", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(decode_response(r.content, r.headers)["MAP"], expected_refine(maps, 5), atol=1e-6)


def _png_bytes(img: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_route_raw_multipart_and_json(client) -> None:
    img = _image(1, 30, 22, seed=3)
    want = images.to_uint8_map(_reference(img)[0, 0])
    raw = client.post("/predict", content=_png_bytes(img[0]), headers=AUTH)
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raw.content))), want)
    multi = client.post("/predict", files={"image": ("a.png", _png_bytes(img[0]), "image/png")}, headers=AUTH)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(multi.content))), want)
    as_json = client.post("/predict?format=json&samples=3", content=_png_bytes(img[0]), headers=AUTH).json()
    assert (as_json["height"], as_json["width"]) == (30, 22)
    np.testing.assert_allclose(np.asarray(as_json["saliency"]), _reference(img, 3)[0, 0], atol=1e-6)
    assert set(as_json["uncertainty"]) == {"predictive", "aleatoric", "epistemic"}
    unc = client.post("/predict?output=predictive", content=_png_bytes(img[0]), headers=AUTH)
    bits = np.asarray(as_json["uncertainty"]["predictive"]) / math.log(2)  # samples differ: just the scale
    assert np.asarray(Image.open(io.BytesIO(unc.content))).max() <= 255 and bits.max() <= 1


def _chunks(data: bytes):
    for i in range(0, len(data), 4096):
        yield data[i : i + 4096]


def _bad_requests() -> list[tuple[str, dict, int, str]]:
    img = _image(1)
    good_tensor = json_tensor("IMAGE", img, "UINT8")
    nan = np.zeros((1, 3, SIZE, SIZE), np.float32)
    nan[0, 1, 2, 3] = np.nan
    nan_body, nan_headers = binary_request([("IMAGE", nan, "FP32")])
    short_body, short_headers = binary_request([("IMAGE", img, "UINT8")])
    wrong_size = json.loads(short_body[: int(short_headers["Inference-Header-Content-Length"])])
    wrong_size["inputs"][0]["parameters"]["binary_data_size"] = img.nbytes - 1
    wrong_text = json.dumps(wrong_size).encode()
    return [
        ("malformed json", {"content": b'{"inputs": [', "headers": AUTH}, 400, "not valid JSON"),
        ("not an object", {"content": b"[1, 2]", "headers": AUTH}, 400, "must be a JSON object"),
        ("wrong datatype", {"json": {"inputs": [{**good_tensor, "datatype": "FLOAT32"}]}, "headers": AUTH}, 400, "unknown datatype 'FLOAT32'"),
        ("datatype the model refuses", {"json": {"inputs": [{**good_tensor, "datatype": "INT32"}]}, "headers": AUTH}, 400, "got datatype INT32"),
        ("shape/data mismatch", {"json": {"inputs": [{**good_tensor, "shape": [1, 20, 25, 3]}]}, "headers": AUTH}, 400, "needs 1500 values, data has 1440"),
        ("ragged data", {"json": {"inputs": [{**good_tensor, "shape": [2, 2], "data": [[1, 2], [3]]}]}, "headers": AUTH}, 400, "not a regular nested list"),
        ("pixel out of range", {"json": {"inputs": [{**good_tensor, "data": [300] * 1440}]}, "headers": AUTH}, 400, "integers in [0, 255]"),
        ("binary size vs shape", {"content": wrong_text + img.tobytes(), "headers": {**AUTH, "Inference-Header-Content-Length": str(len(wrong_text))}}, 400, "does not match shape"),
        ("binary body too short", {"content": short_body[:-10], "headers": {**AUTH, **short_headers}}, 400, "only 1430 bytes follow"),
        ("binary body too long", {"content": short_body + b"xx", "headers": {**AUTH, **short_headers}}, 400, "2 bytes of binary data"),
        ("header length beyond body", {"content": b"{}", "headers": {**AUTH, "Inference-Header-Content-Length": "99"}}, 400, "body has 2 bytes"),
        ("NaN binary", {"content": nan_body, "headers": {**AUTH, **nan_headers}}, 400, "1 NaN/inf values"),
        ("NaN json", {"content": json.dumps({"inputs": [json_tensor("IMAGE", nan, "FP32")]}).encode(), "headers": AUTH}, 400, "1 NaN/inf"),
        ("wrong FP32 layout", {"json": {"inputs": [json_tensor("IMAGE", np.zeros((1, 3, 8, 8)), "FP32")]}, "headers": AUTH}, 400, f"[B, 3, {SIZE}, {SIZE}]"),
        ("unknown input", {"json": {"inputs": [{**good_tensor, "name": "PIXELS"}]}, "headers": AUTH}, 400, "unknown input(s) ['PIXELS']"),
        ("unknown output", {"json": {"inputs": [good_tensor], "outputs": [{"name": "EDGES"}]}, "headers": AUTH}, 400, "no output(s) ['EDGES']"),
        ("bad parameter", {"json": {"inputs": [good_tensor], "parameters": {"samples": 0}}, "headers": AUTH}, 400, "'samples' must be an integer in [1, 64]"),
        ("BYTES tensor", {"json": {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}, "headers": AUTH}, 400, "BYTES tensors are not accepted"),
        ("unknown model", {"json": {"inputs": [good_tensor]}, "headers": AUTH, "url": "/v2/models/edges/infer"}, 404, "unknown model 'edges'"),
        ("oversize declared", {"content": b"x" * (LIMIT + 1), "headers": AUTH}, 413, "exceeds the server's limit"),
        ("oversize chunked", {"content": _chunks(b" " * (LIMIT + 10)), "headers": AUTH}, 413, "exceeds the server's limit"),
        ("gzip bomb", {"content": gzip.compress(b" " * (LIMIT * 4)), "headers": {**AUTH, "Content-Encoding": "gzip"}}, 413, "exceeds"),
        ("missing token", {"json": {"inputs": [good_tensor]}}, 401, "bearer token"),
        ("wrong token", {"json": {"inputs": [good_tensor]}, "headers": {"Authorization": "Bearer nope"}}, 401, "bearer token"),
        ("non-image bytes", {"content": b"this is not an image", "headers": AUTH, "url": "/predict"}, 400, "is not an image file"),
        ("empty predict", {"content": b"", "headers": AUTH, "url": "/predict"}, 400, "empty body"),
        ("bad predict option", {"content": b"x", "headers": AUTH, "url": "/predict?format=tiff"}, 400, "format='tiff'"),
        ("wrong method", {"headers": AUTH, "url": "/v2/health/ready"}, 405, "no route POST"),
    ]


@pytest.mark.parametrize(("name", "kwargs", "status", "reason"), _bad_requests(), ids=[b[0] for b in _bad_requests()])
def test_bad_request_gets_reason_and_server_keeps_serving(client, name: str, kwargs: dict, status: int, reason: str) -> None:
    kwargs = dict(kwargs)
    url = kwargs.pop("url", INFER)
    r = client.post(url, **kwargs)
    assert r.status_code == status, (r.status_code, r.text)
    assert reason in r.json()["error"], r.json()
    _good_request(client)


def test_health_needs_no_token_but_metrics_does(client) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 200


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + labels + r"\}" if labels else r"(?:\{\})?") + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_concurrent_requests_are_batched_and_metrics_show_it(client, fake: FakePredictor) -> None:
    before = client.get("/metrics", headers=AUTH).text
    fake.gate = threading.Event()
    first = len(fake.calls)
    xs = [np.random.default_rng(10 + i).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for i in range(12)]

    def call(x: np.ndarray) -> np.ndarray:
        body, headers = binary_request([("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY", "parameters": {"binary_data": True}}])
        r = client.post(INFER, content=body, headers={**headers, **AUTH})
        assert r.status_code == 200, r.text
        return decode_response(r.content, r.headers)["SALIENCY"]

    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(call, x) for x in xs]
            batcher = client.app.state.salkit.batching.batcher
            def held() -> int:  # rows inside the (blocked) first call plus rows queued behind it
                return (fake.calls[first][1] if len(fake.calls) > first else 0) + batcher.queue_depth

            for _ in range(500):  # ≤ 5 s: the first call holds the predictor, the rest queue
                if held() == 12:
                    break
                threading.Event().wait(0.01)
            assert held() == 12
            fake.gate.set()
            outs = [f.result(30) for f in futures]
    finally:
        fake.gate = None
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_allclose(out, expected_saliency(x, 2, 3), atol=1e-6)
    sizes = [n for _, n, _ in fake.calls[first:]]
    rest = 12 - sizes[0]  # max_batch_size=8: the queued rows fill whole batches, then one partial
    assert sizes[1:] == [8] * (rest // 8) + ([rest % 8] if rest % 8 else []) and len(sizes) < 12
    after = client.get("/metrics", headers=AUTH).text
    calls = _metric(after, "salkit_batch_size_count") - _metric(before, "salkit_batch_size_count")
    rows = _metric(after, "salkit_batch_size_sum") - _metric(before, "salkit_batch_size_sum")
    assert (calls, rows) == (len(sizes), 12)  # the histogram saw the same batches
    route = 'method="POST",route="/v2/models/\\{model\\}/infer",status="200"'
    assert _metric(after, "salkit_http_requests_total", route) - _metric(before, "salkit_http_requests_total", route) == 12
    assert "salkit_http_request_duration_seconds_bucket" in after and "salkit_queue_depth" in after


def test_ready_is_503_until_loaded_and_warmed() -> None:
    release = threading.Event()
    fake = FakePredictor()

    def slow_load() -> FakePredictor:
        assert release.wait(10)
        return fake

    with make_client(create_app(slow_load)) as c:
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and "loading" in r.json()["error"]
        assert c.post(INFER, json={"inputs": []}).status_code == 503
        assert c.get("/v2/health/live").status_code == 200
        release.set()
        wait_ready(c)
        assert [op for op, _, _ in fake.calls] == ["predict", "refine"]  # warmed before ready
    assert fake.closed


def test_failed_load_is_reported_and_fatal_hook_called() -> None:
    seen: list[BaseException] = []

    def broken() -> None:
        raise SalkitError("bundle /x has no manifest.json")

    with make_client(create_app(broken, on_fatal=seen.append)) as c:
        for _ in range(500):
            if seen:
                break
            threading.Event().wait(0.01)
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and "failed to load: bundle /x has no manifest.json" in r.json()["error"]
    assert len(seen) == 1 and isinstance(seen[0], SalkitError)


def test_qefpn_bundle_serves_qefpn_model() -> None:
    fake = FakePredictor("qefpn")
    with make_client(create_app(lambda: fake)) as c:
        wait_ready(c)
        assert c.get("/v2/models/saliency").status_code == 404
        assert [t["name"] for t in c.get("/v2/models/qefpn").json()["outputs"]] == ["SALIENCY", "ITERATIONS", "RESIDUAL"]
        img = _image(2)
        r = c.post("/v2/models/qefpn/infer", json={"inputs": [json_tensor("IMAGE", img, "UINT8")]})
        out = decode_response(r.content, r.headers)
        np.testing.assert_allclose(out["SALIENCY"], _reference(img, 1, 0), atol=1e-6)
        assert out["ITERATIONS"].tolist() == [6.0, 6.0]
        as_json = c.post("/predict?format=json", content=_png_bytes(img[0])).json()
        assert as_json["iterations"] == 6.0 and "uncertainty" not in as_json
        assert c.post("/predict?output=epistemic", content=_png_bytes(img[0])).status_code == 400
    assert [op for op, _, _ in fake.calls][:1] == ["predict"] and "refine" not in [op for op, _, _ in fake.calls]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1"),
        ({"max_delay_ms": -2}, "max_delay_ms must be a finite number >= 0"),
        ({"max_body_bytes": 0}, "max_body_bytes must be a positive integer"),
    ],
)
def test_app_knobs_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(SalkitError, match=re.escape(message)):
        create_app(FakePredictor, **kwargs)
