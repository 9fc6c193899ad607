"""The server on real exported bundles: v2 answers equal the Predictor's own, the CLI end to end
(tritonclient, /predict, SIGTERM) and its start-up checks, BatchingPredictor on a real predictor."""

from __future__ import annotations

import concurrent.futures
import io
import signal
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from salkit.base import images
from salkit.runtime.batching_predictor import BatchingPredictor
from salkit.runtime.predictor import Predictor
from salkit.runtime.server.app import create_app
from salkit.runtime.server.cmd_serve import serve
from tests.runtime.server_helpers import AUTH, SAL_RUNTIME, TOKEN, binary_request, decode_response, json_tensor, live_server, make_client, wait_ready

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def reference(tiny_coop_bundle: Path):
    with Predictor.from_bundle(tiny_coop_bundle, backend="ort-cpu", threads=1) as predictor:
        yield predictor


def _images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_v2_answers_equal_the_predictor(tiny_coop_bundle: Path, reference: Predictor) -> None:
    m = reference.manifest
    app = create_app(lambda: Predictor.from_bundle(tiny_coop_bundle, backend="ort-cpu", threads=1), max_batch_size=4, max_delay_ms=2)
    with make_client(app) as client:
        wait_ready(client)
        x = images.preprocess(list(_images(3, m.input_size, m.input_size)), m.input_size, m.mean, m.std)
        body, headers = binary_request([("IMAGE", x, "FP32")], parameters={"seed": 3, "samples": 2, "steps": 1, "binary_data_output": True})
        r = client.post("/v2/models/saliency/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        out = decode_response(r.content, r.headers)
        want = reference.predict_tensor(x, seed=3, samples=2, steps=1)
        np.testing.assert_allclose(out["SALIENCY"], want["saliency"], atol=1e-6)
        stacked = np.concatenate([want[k] for k in ("predictive", "aleatoric", "epistemic")], axis=1)
        np.testing.assert_allclose(out["UNCERTAINTY"], stacked, atol=1e-6)

        img = _images(2, 40, 52, seed=1)  # UINT8 at another size: maps come back at 40×52
        r = client.post("/v2/models/saliency/infer", json={"inputs": [json_tensor("IMAGE", img, "UINT8")], "parameters": {"seed": 5}})
        got = decode_response(r.content, r.headers)["SALIENCY"]
        expected = reference.predict(list(img), seed=5, uncertainty=True).saliency
        assert got.shape == (2, 1, 40, 52)
        np.testing.assert_allclose(got[:, 0], np.stack(expected), atol=1e-5)

        maps = np.random.default_rng(2).random((3, 1, m.input_size, m.input_size)).astype(np.float32)
        body, headers = binary_request([("IMAGE", x, "FP32"), ("MAP", maps, "FP32")], parameters={"steps": 2})
        r = client.post("/v2/models/refine/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(decode_response(r.content, r.headers)["MAP"], reference.refine_tensor(x, maps, steps=2), atol=1e-6)


def test_qefpn_bundle_over_v2(toy_qefpn) -> None:
    with Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", threads=1) as ref:
        m = ref.manifest
        x = images.preprocess(list(_images(2, 20, 20)), m.input_size, m.mean, m.std)
        want = ref.predict_tensor(x, steps=4)
    app = create_app(lambda: Predictor.from_bundle(toy_qefpn.path, backend="ort-cpu", threads=1))
    with make_client(app) as client:
        wait_ready(client)
        assert client.get("/v2/models/saliency").status_code == 404
        body, headers = binary_request([("IMAGE", x, "FP32")], parameters={"steps": 4})
        r = client.post("/v2/models/qefpn/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        out = decode_response(r.content, r.headers)
    np.testing.assert_allclose(out["SALIENCY"], want["saliency"], atol=1e-6)
    np.testing.assert_array_equal(out["ITERATIONS"], want["iterations"])
    np.testing.assert_allclose(out["RESIDUAL"], want["residual"], rtol=1e-5)


def test_batching_predictor_on_a_real_predictor(reference: Predictor) -> None:
    imgs = [_images(1, 30, 30, seed=i)[0] for i in range(6)]
    with BatchingPredictor(reference, max_batch_size=4, max_delay_ms=20) as bp:
        seeded = bp.predict(imgs[:2], seed=11)
        direct = reference.predict(imgs[:2], seed=11)
        for a, b in zip(seeded.saliency, direct.saliency, strict=True):
            np.testing.assert_array_equal(a, b)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda im: bp.predict([im], uncertainty=False), imgs))
        assert all(o.saliency[0].shape == (30, 30) and o.uncertainty is None for o in outs)
        refined = bp.refine(imgs[:1], [np.full((30, 30), 0.5, np.float32)], steps=1)
        np.testing.assert_allclose(refined[0], reference.refine(imgs[:1], [np.full((30, 30), 0.5, np.float32)], steps=1)[0], atol=1e-6)
    assert sum(bp.batcher.batch_sizes.values()) < 6 + 2  # the six concurrent calls shared backend calls


def test_cli_serves_a_bundle_end_to_end(tiny_coop_bundle: Path, reference: Predictor, tmp_path: Path) -> None:
    tritonclient = pytest.importorskip("tritonclient.http")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    args = [SAL_RUNTIME, "serve", "--engine", str(tiny_coop_bundle), "--backend", "ort-cpu", "--threads", "1",
            "--max-batch", "4", "--token-file", str(token_file), "--log-level", "warning"]  # fmt: skip
    with live_server(args, ready_timeout=120) as (proc, url):
        client = tritonclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        try:
            m = reference.manifest
            x = images.preprocess(list(_images(2, 10, 10, seed=4)), m.input_size, m.mean, m.std)
            image = tritonclient.InferInput("IMAGE", list(x.shape), "FP32")
            image.set_data_from_numpy(x)
            result = client.infer("saliency", [image], headers=dict(AUTH), parameters={"seed": 9})
            want = reference.predict_tensor(x, seed=9)
            np.testing.assert_allclose(result.as_numpy("SALIENCY"), want["saliency"], atol=1e-6)
        finally:
            client.close()
        photo = io.BytesIO()
        Image.fromarray(_images(1, 48, 36, seed=6)[0]).save(photo, format="JPEG")
        r = httpx.post(url + "/predict?seed=1", content=photo.getvalue(), headers=AUTH, timeout=60)
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (36, 48)
        assert httpx.post(url + "/predict", content=photo.getvalue(), timeout=10).status_code == 401

        # 16 concurrent clients on the real predictor: every answer right, and calls were shared.
        img = _images(1, 50, 50, seed=8)
        body, headers = binary_request([("IMAGE", img, "UINT8")], parameters={"samples": 2, "steps": 1}, outputs=[{"name": "SALIENCY"}])

        def client(_: int) -> list[np.ndarray]:
            with httpx.Client(base_url=url, headers=AUTH, timeout=120) as http:
                responses = [http.post("/v2/models/saliency/infer", content=body, headers=headers) for _ in range(3)]
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
            return [decode_response(r.content, r.headers)["SALIENCY"] for r in responses]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            maps = [m for ms in pool.map(client, range(16)) for m in ms]
        assert len(maps) == 48 and all(m.shape == (1, 1, 50, 50) and 0 <= m.min() and m.max() <= 1 for m in maps)
        metrics = httpx.get(url + "/metrics", headers=AUTH, timeout=10).text
        count = float(metrics.split("salkit_batch_size_count ")[1].split()[0])
        rows = float(metrics.split("salkit_batch_size_sum ")[1].split()[0])
        assert rows >= 48 + 2 and count < rows  # (+ the tritonclient rows) fewer calls than rows: batched
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-batch", "0"], "max_batch_size must be an integer >= 1, got 0"),
        (["--max-delay-ms", "-3"], "max_delay_ms must be a finite number >= 0"),
        (["--port", "70000"], "--port 70000 is out of range"),
        (["--max-body-mb", "0"], "--max-body-mb 0 must be in (0, 4096] MiB"),
        (["--backend", "cuda9"], "unknown backend 'cuda9'"),
        (["--token-file", "/nonexistent/token"], "--token-file /nonexistent/token does not exist"),
    ],
)
def test_cli_checks_knobs_before_serving(tiny_coop_bundle: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(serve, ["--engine", str(tiny_coop_bundle), *extra])
    assert result.exit_code == 2
    output = result.stderr if hasattr(result, "stderr") else result.output
    assert output.startswith("error: ") and message in output and output.count("\n") == 1, output


def test_cli_refuses_a_missing_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(serve, ["--engine", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in (result.stderr if hasattr(result, "stderr") else result.output)
