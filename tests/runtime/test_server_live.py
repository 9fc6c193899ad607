"""A real uvicorn server on 127.0.0.1 (fake predictor): unmodified tritonclient, SIGTERM drain,
16 concurrent clients with flat memory. Every loop is bounded in count and time."""

from __future__ import annotations

import concurrent.futures
import re
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from salkit.runtime.server.launch import rss_kib
from tests.runtime.fake_predictor import SIZE, expected_saliency, expected_uint8_saliency
from tests.runtime.server_helpers import AUTH, FAKE_SERVER, TOKEN, binary_request, decode_response, live_server

pytestmark = pytest.mark.timeout(180)
FAKE = FAKE_SERVER


def test_tritonclient_works_unmodified() -> None:
    tritonclient = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    # tritonclient adds its own headers to the dict it is given: pass a fresh one per call.
    with live_server([*FAKE, "--token", TOKEN]) as (_, url):
        client = tritonclient.InferenceServerClient(url.removeprefix("http://"), connection_timeout=10, network_timeout=30)
        try:
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready("saliency", headers=dict(AUTH))
            meta = client.get_model_metadata("saliency", headers=dict(AUTH))
            assert meta["name"] == "saliency" and meta["inputs"][0]["datatype"] == "UINT8"
            assert "binary_tensor_data" in client.get_server_metadata(headers=dict(AUTH))["extensions"]

            img = np.random.default_rng(0).integers(0, 256, (2, 21, 17, 3), dtype=np.uint8)
            image = tritonclient.InferInput("IMAGE", list(img.shape), "UINT8")
            image.set_data_from_numpy(img)  # binary_data=True: the tensor rides after the JSON header
            result = client.infer("saliency", [image], headers=dict(AUTH), parameters={"samples": 5, "steps": 2})
            np.testing.assert_allclose(result.as_numpy("SALIENCY"), expected_uint8_saliency(img, 5, 2), atol=1e-6)
            assert result.as_numpy("UNCERTAINTY").shape == (2, 3, 21, 17)
            zipped = client.infer("saliency", [image], headers=dict(AUTH), parameters={"samples": 5, "steps": 2},
                                  request_compression_algorithm="gzip", response_compression_algorithm="gzip")  # fmt: skip
            np.testing.assert_allclose(zipped.as_numpy("SALIENCY"), expected_uint8_saliency(img, 5, 2), atol=1e-6)

            x = np.random.default_rng(1).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
            image = tritonclient.InferInput("IMAGE", list(x.shape), "FP32")
            image.set_data_from_numpy(x, binary_data=False)  # JSON in, JSON out
            wanted = [tritonclient.InferRequestedOutput("SALIENCY", binary_data=False)]
            result = client.infer("saliency", [image], outputs=wanted, headers=dict(AUTH), model_version="1")
            np.testing.assert_allclose(result.as_numpy("SALIENCY"), expected_saliency(x, 2, 3), atol=1e-6)
            assert result.as_numpy("UNCERTAINTY") is None

            with pytest.raises(InferenceServerException, match="unknown model 'edges'"):
                client.infer("edges", [image], headers=dict(AUTH))
            with pytest.raises(InferenceServerException, match="bearer token"):
                client.get_model_metadata("saliency")
            bad = tritonclient.InferInput("IMAGE", [1, 3, SIZE, SIZE], "FP32")
            bad.set_data_from_numpy(np.full((1, 3, SIZE, SIZE), np.nan, np.float32))
            with pytest.raises(InferenceServerException, match="NaN/inf"):
                client.infer("saliency", [bad], headers=dict(AUTH))
            assert client.infer("saliency", [image], outputs=wanted, headers=dict(AUTH)).as_numpy("SALIENCY").shape == (3, 1, SIZE, SIZE)
        finally:
            client.close()


def test_sigterm_finishes_in_flight_requests_then_exits_zero() -> None:
    with live_server([*FAKE, "--delay", "3"]) as (proc, url):
        x = np.zeros((1, 3, SIZE, SIZE), np.float32)
        body, headers = binary_request([("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY"}])
        outcome: dict = {}

        def slow_call() -> None:
            try:
                outcome["response"] = httpx.post(url + "/v2/models/saliency/infer", content=body, headers=headers, timeout=30)
            except Exception as err:
                outcome["error"] = err

        caller = threading.Thread(target=slow_call)
        caller.start()
        end = time.monotonic() + 10
        while "salkit_http_requests_in_flight 2.0" not in httpx.get(url + "/metrics", timeout=5).text:  # itself + the call
            assert time.monotonic() < end, "the slow request never reached the server"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        refused = False
        end = time.monotonic() + 2.0
        while not refused and time.monotonic() < end:  # the listener closes while the call drains
            try:
                httpx.get(url + "/v2/health/live", timeout=1)
                time.sleep(0.05)
            except httpx.TransportError:
                refused = True
        assert refused and caller.is_alive(), "new connections must be refused while the slow call is still running"
        caller.join(30)
        assert proc.wait(30) == 0
        response = outcome.get("response")
        assert response is not None and response.status_code == 200, outcome
        np.testing.assert_allclose(decode_response(response.content, response.headers)["SALIENCY"], expected_saliency(x, 2, 3))


def _metric(text: str, name: str) -> float:
    found = re.search(re.escape(name) + r" ([0-9.e+-]+)", text)
    return float(found.group(1)) if found else 0.0


def test_sixteen_concurrent_clients_no_failures_flat_memory() -> None:
    clients, warm_rounds, rounds = 16, 8, 30
    with live_server([*FAKE, "--delay", "0.004", "--per-row", "0.001", "--max-batch", "8", "--max-delay-ms", "5"]) as (proc, url):
        img = np.random.default_rng(3).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
        body, headers = binary_request([("IMAGE", img, "UINT8")], outputs=[{"name": "SALIENCY", "parameters": {"binary_data": True}}])
        want = expected_uint8_saliency(img)
        failures: list[str] = []

        def worker(n: int) -> int:
            done = 0
            with httpx.Client(base_url=url, timeout=30) as http:
                for _ in range(n):
                    r = http.post("/v2/models/saliency/infer", content=body, headers=headers)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {r.text[:200]}")
                        continue
                    if not np.allclose(decode_response(r.content, r.headers)["SALIENCY"], want, atol=1e-6):
                        failures.append("wrong values")
                    done += 1
            return done

        def run(n: int) -> int:
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                return sum(pool.map(worker, [n] * clients))

        assert run(warm_rounds) == clients * warm_rounds
        rss_before = rss_kib(proc.pid)
        start = time.monotonic()
        assert run(rounds) == clients * rounds
        elapsed = time.monotonic() - start
        rss_after = rss_kib(proc.pid)
        metrics = httpx.get(url + "/metrics", timeout=5).text
    assert failures == []
    assert rss_after - rss_before < 20 * 1024, f"RSS grew {rss_before} → {rss_after} KiB"
    batches = _metric(metrics, "salkit_batch_size_count")
    rows = _metric(metrics, "salkit_batch_size_sum")
    assert rows == clients * (warm_rounds + rounds)  # every request went through the batcher (warm-up does not)
    assert rows / batches > 2, f"mean batch {rows / batches:.2f}: requests were not batched"
    print(f"16 clients: {clients * rounds / elapsed:.0f} req/s, mean batch {rows / batches:.2f}, RSS {rss_before} → {rss_after} KiB")
