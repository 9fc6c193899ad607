"""Model configuration and statistics in Triton's schema on both protocols, the interface shared
with the Triton repository that ``export-trt --triton-repo`` writes, and ``tritonclient.grpc``
against ``tritonclient.http`` on a real bundle served by ``sal-runtime serve --grpc-port``."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")
from google.protobuf import json_format, text_format  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc  # noqa: E402 — after importorskip, so a host without gRPC skips the module

from salkit.runtime.predictor import Predictor  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from salkit.runtime.server.app import create_app  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tests.runtime.fake_predictor import SIZE, FakePredictor, make_manifest  # noqa: E402 — after importorskip, so a host without gRPC skips the module
from tests.runtime.server_helpers import SAL_RUNTIME, binary_request, json_tensor, live_server_grpc, make_client, wait_ready  # noqa: E402 — after importorskip, so a host without gRPC skips the module

pytestmark = pytest.mark.timeout(300)
INFER = "/v2/models/saliency/infer"


def _stub(app):
    channel = grpc.insecure_channel(f"127.0.0.1:{app.state.salkit_grpc.port}")
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _config(client, stub, name: str):
    """The config over HTTP (parsed into Triton's ModelConfig: an unknown field fails) and over gRPC."""
    response = client.get(f"/v2/models/{name}/config")
    assert response.status_code == 200, response.text
    over_http = json_format.ParseDict(response.json(), model_config_pb2.ModelConfig())
    over_grpc = stub.ModelConfig(service_pb2.ModelConfigRequest(name=name), timeout=10).config
    assert over_http == over_grpc
    return over_http


def test_config_in_triton_schema_on_both_protocols() -> None:
    app = create_app(FakePredictor, max_batch_size=4, max_delay_ms=2.5, max_queue=64, grpc_port=0)
    with make_client(app) as client:
        wait_ready(client)
        channel, stub = _stub(app)
        with channel:
            config = _config(client, stub, "saliency")
            assert (config.name, config.platform, config.backend, config.max_batch_size) == ("saliency", "salkit_coop", "salkit", 4)
            assert config.dynamic_batching.max_queue_delay_microseconds == 2500
            assert config.dynamic_batching.default_queue_policy.max_queue_size == 64
            assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
            assert [(t.name, list(t.dims)) for t in config.input] == [("IMAGE", [3, SIZE, SIZE])]
            assert [(t.name, list(t.dims)) for t in config.output] == [("SALIENCY", [1, SIZE, SIZE]), ("UNCERTAINTY", [3, SIZE, SIZE])]
            assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in [*config.input, *config.output])
            params = {k: v.string_value for k, v in config.parameters.items()}
            assert params["salkit_backend"] == "fake"
            assert json.loads(params["salkit_settings"]) == {"kind": "coop", **make_manifest().coop}
            assert json.loads(params["salkit_request_parameters"]) == {"samples": "INT64", "steps": "INT64", "noise": "BOOL", "seed": "INT64"}
            refine = _config(client, stub, "refine")
            assert [t.name for t in refine.input] == ["IMAGE", "MAP"]
            assert json.loads(refine.parameters["salkit_request_parameters"].string_value) == {"steps": "INT64"}
            # A client that builds its request from the config alone is served.
            x = np.zeros((2, *config.input[0].dims), np.float32)
            body, headers = binary_request([("IMAGE", x, "FP32")])
            assert client.post(INFER, content=body, headers=headers).status_code == 200
            assert client.get("/v2/models/edges/config").status_code == 404
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelConfig(service_pb2.ModelConfigRequest(name="edges"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    qefpn = create_app(lambda: FakePredictor("qefpn"), grpc_port=0)
    with make_client(qefpn) as client:
        wait_ready(client)
        channel, stub = _stub(qefpn)
        with channel:
            config = _config(client, stub, "qefpn")
    iterations = config.output[1]
    assert iterations.name == "ITERATIONS" and list(iterations.dims) == [1] and list(iterations.reshape.shape) == []


def _durations(stats: dict) -> dict[str, tuple[int, int]]:
    return {k: (v["count"], v["ns"]) for k, v in stats["inference_stats"].items()}


def test_statistics_count_requests_batches_and_time() -> None:
    fake = FakePredictor(free_calls=2)
    app = create_app(lambda: fake, max_batch_size=2, max_delay_ms=50, grpc_port=0)
    with make_client(app) as client:
        wait_ready(client)
        first = len(fake.calls)
        fake.gate = threading.Event()
        xs = [np.random.default_rng(i).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for i in range(4)]

        def call(x: np.ndarray) -> int:
            body, headers = binary_request([("IMAGE", x, "FP32")], outputs=[{"name": "SALIENCY"}])
            return client.post(INFER, content=body, headers=headers).status_code

        hold = 0.3
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(call, x) for x in xs]
            batcher = app.state.salkit.batching.batcher
            end = time.monotonic() + 10
            while len(fake.calls) == first or fake.calls[first][1] + batcher.queue_depth != 4:
                assert time.monotonic() < end
                time.sleep(0.01)
            time.sleep(hold)  # the first call is held inside the backend, the rest wait in the queue
            fake.gate.set()
            assert [f.result(30) for f in futures] == [200] * 4
        fake.gate = None
        sizes = [n for _, n, _ in fake.calls[first:]]
        queued = 4 - sizes[0]  # requests that waited behind the held call
        nan = np.full((1, 3, SIZE, SIZE), np.nan, np.float32)
        body, headers = binary_request([("IMAGE", nan, "FP32")])
        assert client.post(INFER, content=body, headers=headers).status_code == 400
        maps = np.full((1, 1, SIZE, SIZE), 0.5, np.float32)
        img = np.zeros((1, SIZE, SIZE, 3), np.uint8)
        refine = {"inputs": [json_tensor("IMAGE", img, "UINT8"), json_tensor("MAP", maps, "FP32")]}
        assert client.post("/v2/models/refine/infer", json=refine).status_code == 200

        stats = client.get("/v2/models/saliency/stats").json()["model_stats"][0]
        channel, stub = _stub(app)
        with channel:
            over_grpc = stub.ModelStatistics(service_pb2.ModelStatisticsRequest(name="saliency"), timeout=10)
            everything = stub.ModelStatistics(service_pb2.ModelStatisticsRequest(), timeout=10)
        all_http = client.get("/v2/models/stats").json()
    assert json_format.ParseDict({"model_stats": [stats]}, service_pb2.ModelStatisticsResponse()) == over_grpc
    assert json_format.ParseDict(all_http, service_pb2.ModelStatisticsResponse()) == everything
    assert [s["name"] for s in all_http["model_stats"]] == ["saliency", "refine"]
    assert all_http["model_stats"][1]["inference_count"] == 1 and all_http["model_stats"][1]["inference_stats"]["success"]["count"] == 1

    assert (stats["name"], stats["version"]) == ("saliency", "1") and stats["last_inference"] > 0
    assert stats["inference_count"] == 4 and stats["execution_count"] == len(sizes)  # warm-up calls are not counted
    assert {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]} == {n: sizes.count(n) for n in set(sizes)}
    d = _durations(stats)
    assert d["success"][0] == 4 and d["fail"][0] == 1 and d["fail"][1] > 0
    assert all(d[k][0] == 4 for k in ("queue", "compute_input", "compute_infer", "compute_output"))
    assert d["compute_input"][1] + d["queue"][1] + d["compute_infer"][1] + d["compute_output"][1] == d["success"][1]
    # Every request's compute_infer is its call's time: the held call lasted ≥ hold for its rows.
    assert d["compute_infer"][1] >= sizes[0] * hold * 1e9
    assert d["queue"][1] >= queued * hold * 1e9 and d["success"][1] >= 4 * hold * 1e9
    held = next(b for b in stats["batch_stats"] if b["batch_size"] == sizes[0])["compute_infer"]
    assert held["ns"] >= hold * 1e9


def _triton_entry(bundle: Path, tmp_path: Path, name: str):
    from salkit.export.triton_repo import write_triton_repo
    from salkit.runtime.bundle import load_bundle

    write_triton_repo(load_bundle(bundle), bundle, tmp_path / "repo")
    return text_format.Parse((tmp_path / "repo" / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize(("toy", "name"), [("toy_coop", "saliency"), ("toy_qefpn", "qefpn")])
def test_serve_reports_the_interface_of_the_triton_repository(toy: str, name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bundle = request.getfixturevalue(toy).path
    triton = _triton_entry(bundle, tmp_path, name)
    app = create_app(lambda: Predictor.from_bundle(bundle, backend="ort-cpu", threads=1), grpc_port=0)
    with make_client(app) as client:
        wait_ready(client)
        channel, stub = _stub(app)
        with channel:
            served = _config(client, stub, name)
    assert served.name == triton.name
    assert list(served.input) == list(triton.input) and list(served.output) == list(triton.output)
    theirs = {k: v.string_value for k, v in triton.parameters.items()}
    ours = {k: v.string_value for k, v in served.parameters.items()}
    assert set(ours) - set(theirs) == {"salkit_backend"} and ours["salkit_backend"] == "ort-cpu"
    assert ours["salkit_request_parameters"] == theirs["salkit_request_parameters"]
    wiring = {"prefix", "feature_names", "split_energy"}  # how the Triton loop model finds its graph models
    their_settings = json.loads(theirs["salkit_settings"])
    assert set(their_settings) - set(json.loads(ours["salkit_settings"])) <= wiring
    assert {k: v for k, v in their_settings.items() if k not in wiring} == json.loads(ours["salkit_settings"])


def test_grpc_and_http_clients_get_identical_maps(toy_coop) -> None:
    import tritonclient.grpc as tritongrpc
    import tritonclient.http as tritonhttp

    args = [SAL_RUNTIME, "serve", "--engine", str(toy_coop.path), "--backend", "ort-cpu", "--threads", "1", "--log-level", "warning"]
    img = np.random.default_rng(4).integers(0, 256, (2, 40, 52, 3), dtype=np.uint8)
    parameters = {"seed": 11, "samples": 3, "steps": 2}
    with live_server_grpc(args, ready_timeout=120) as (proc, url, address):
        over_grpc = tritongrpc.InferenceServerClient(address)
        over_http = tritonhttp.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        try:
            results = []
            for module, client in ((tritongrpc, over_grpc), (tritonhttp, over_http)):
                image = module.InferInput("IMAGE", list(img.shape), "UINT8")
                image.set_data_from_numpy(img)
                results.append(client.infer("saliency", [image], parameters=parameters))
            grpc_stats = over_grpc.get_inference_statistics("saliency", as_json=True)
            http_stats = over_http.get_inference_statistics("saliency")
        finally:
            over_grpc.close()
            over_http.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    for output in ("SALIENCY", "UNCERTAINTY"):
        a, b = results[0].as_numpy(output), results[1].as_numpy(output)
        assert a.shape == b.shape == (2, 1 if output == "SALIENCY" else 3, 40, 52)
        assert np.abs(a - b).max() <= 1e-6
    with Predictor.from_bundle(toy_coop.path, backend="ort-cpu", threads=1) as reference:
        want = reference.predict(list(img), seed=11, samples=3, steps=2, uncertainty=True).saliency
    np.testing.assert_allclose(results[0].as_numpy("SALIENCY")[:, 0], np.stack(want), atol=1e-5)
    counts = [int(s["model_stats"][0]["inference_stats"]["success"]["count"]) for s in (grpc_stats, http_stats)]
    assert counts == [2, 2]  # one request per protocol, both in the same statistics


def test_cli_refuses_grpc_ports_it_cannot_use(toy_coop) -> None:
    import socket
    import subprocess

    from click.testing import CliRunner

    from salkit.runtime.server.cmd_serve import serve

    for extra, message in [(["--port", "8000", "--grpc-port", "8000"], "is the HTTP --port too"),
                           (["--grpc-port", "0"], "--grpc-port 0 is out of range")]:  # fmt: skip
        result = CliRunner().invoke(serve, ["--engine", str(toy_coop.path), *extra])
        output = result.stderr if hasattr(result, "stderr") else result.output
        assert result.exit_code == 2 and output.startswith("error: ") and message in output, output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as probe:  # a port the OS just handed out, not port + 1 (which may be taken)
            probe.bind(("127.0.0.1", 0))
            http_port = probe.getsockname()[1]
        args = [SAL_RUNTIME, "serve", "--engine", str(toy_coop.path), "--port", str(http_port), "--grpc-port", str(port), "--log-level", "warning"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen for gRPC on 127.0.0.1:{port}")
