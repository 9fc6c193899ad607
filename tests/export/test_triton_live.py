"""A real Triton Inference Server serves the repository written with ``--triton-graph-backend python``.

The server is the one inside the ``nvidia-pytriton`` wheel (Python backend only, runs on a CPU).
``make triton-env`` installs it, with its stub's environment (numpy < 2, onnxruntime), into a venv
of its own (``.triton-env``, or ``$SALKIT_TRITON_ENV``); ``make test`` does that first. Without it,
or where its server binary cannot run, the test is skipped with the reason. The wheel is not a
salkit dependency because it pins numpy < 2. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from salkit.export.triton_repo import write_triton_repo
from salkit.runtime.bundle import load_bundle

PYTRITON = "nvidia-pytriton==0.7.0"
READY_TIMEOUT_S = 120.0
ENV = Path(os.environ.get("SALKIT_TRITON_ENV") or Path(__file__).resolve().parents[2] / ".triton-env")


def _installed_site() -> Path:
    """The site-packages of the ``make triton-env`` venv, or a skip that says how to get it."""
    sites = sorted(ENV.glob("lib/python3.*/site-packages"))
    if not (ENV / ".ready").exists() or len(sites) != 1:
        pytest.skip(f"no Triton server environment at {ENV}: run `make triton-env` (installs {PYTRITON} "
                    "and its stub's numpy<2 + onnxruntime there; SALKIT_TRITON_ENV points elsewhere)")
    return sites[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Server:
    def __init__(self, binary: Path, backends: Path, repo: Path, env: dict, log: Path) -> None:
        self.ports = [_free_port() for _ in range(3)]
        self.url = f"http://127.0.0.1:{self.ports[0]}"
        self.log = log
        command = [str(binary), f"--model-repository={repo}", f"--backend-directory={backends}",
                   "--http-address=127.0.0.1", f"--http-port={self.ports[0]}",
                   "--grpc-address=127.0.0.1", f"--grpc-port={self.ports[1]}",
                   "--metrics-address=127.0.0.1", f"--metrics-port={self.ports[2]}",
                   "--allow-gpu-metrics=false", "--exit-on-error=true"]
        self._log_file = log.open("wb")
        started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        while not _ready(self.url):
            if self.process.poll() is not None:
                raise AssertionError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() - started > READY_TIMEOUT_S:
                raise AssertionError(f"tritonserver not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)
        self.startup_s = time.monotonic() - started

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the server's own session: it and its stubs
                self.process.wait(timeout=10)
        self._log_file.close()


def _runnable_stub(server_root: Path, env: dict, version: str) -> Path:
    """The Python stub for the environment's Python ``version`` (``3.11``), if this machine has its
    libpython (the stub embeds the system's libpython)."""
    reasons = []
    for stub in sorted((server_root / "python_backend_stubs").glob(f"{version}/triton_python_backend_stub")):
        result = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, env=env, timeout=30)
        missing = [line.strip() for line in result.stdout.splitlines() if "not found" in line]
        if result.returncode == 0 and not missing:
            return stub
        reasons.append(f"{stub.parent.name}: {'; '.join(missing) or result.stderr.strip()}")
    pytest.skip(f"no Python {version} backend stub of {PYTRITON} can load here ({', '.join(reasons) or 'none shipped'})")


@pytest.fixture(scope="session")
def triton_site() -> Path:
    """Requested first (and session-scoped like the bundle), so a missing server skips before the export."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"{PYTRITON} ships tritonserver for Linux x86_64/aarch64 only, not {sys.platform} {platform.machine()}")
    return _installed_site()


@pytest.fixture(scope="module")
def triton(triton_site: Path, strong_coop_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    site = triton_site
    root = site / "pytriton" / "tritonserver"
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(site / "nvidia_pytriton.libs"),
                                                                         os.environ.get("LD_LIBRARY_PATH")]))}
    binary = root / "bin" / "tritonserver"
    try:
        probe = subprocess.run([str(binary), "--help"], capture_output=True, text=True, env=env, timeout=60)
    except OSError as err:
        pytest.skip(f"tritonserver from {PYTRITON} cannot run on this platform: {err}")
    if "--model-repository" not in probe.stdout + probe.stderr:
        pytest.skip(f"tritonserver from {PYTRITON} cannot run on this platform: {(probe.stderr or probe.stdout)[-500:]}")
    work = tmp_path_factory.mktemp("triton_live")
    backends = work / "backends"
    shutil.copytree(root / "backends", backends)
    version = site.parent.name.removeprefix("python")  # lib/python3.11/site-packages → 3.11
    shutil.copy2(_runnable_stub(root, env, version), backends / "python" / "triton_python_backend_stub")
    repo = work / "repo"
    write_triton_repo(load_bundle(strong_coop_bundle), strong_coop_bundle, repo, graph_backend="python",
                      extra_sys_path=[str(site)])
    server = Server(binary, backends, repo, env, work / "tritonserver.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("noise", [False, True])
def test_live_triton_saliency_equals_the_predictor(triton: Server, strong_coop_bundle: Path, noise: bool) -> None:
    """Under an energy that moves the maps (≥ 0.05 on average), the served answer is sal-runtime's
    for the same bundle, seed and inputs (kernels.coop in both, one seed convention)."""
    import tritonclient.http as httpclient

    from salkit.runtime import Predictor

    client = httpclient.InferenceServerClient(triton.url.removeprefix("http://"), network_timeout=120.0)
    index = {m["name"]: m.get("state") for m in client.get_model_repository_index()}
    manifest = load_bundle(strong_coop_bundle)
    assert index == {**{f"coop_{g}": "READY" for g in manifest.graphs}, "saliency": "READY"}, triton.log_tail()
    assert client.get_model_config("coop_energy_grad")["backend"] == "python"

    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64)).astype(np.float32)
    samples, steps, seed = 3, int(manifest.coop["langevin_steps"]), 11
    image = httpclient.InferInput("IMAGE", list(x.shape), "FP32")
    image.set_data_from_numpy(x)  # binary tensor data, the client's default
    outputs = [httpclient.InferRequestedOutput("SALIENCY"), httpclient.InferRequestedOutput("UNCERTAINTY")]
    started = time.perf_counter()
    result = client.infer("saliency", [image], outputs=outputs,
                          parameters={"samples": samples, "steps": steps, "seed": seed, "noise": noise})
    latency_ms = (time.perf_counter() - started) * 1e3
    saliency, uncertainty = result.as_numpy("SALIENCY"), result.as_numpy("UNCERTAINTY")

    # ort-cpu: the graph models of this repository run ONNX Runtime (auto may choose OpenVINO here)
    with Predictor.from_bundle(strong_coop_bundle, backend="ort-cpu", threads=2) as predictor:
        expected = predictor.predict_tensor(x, samples=samples, steps=steps, seed=seed, noise=noise)
        start = predictor.predict_tensor(x, samples=samples, steps=0, seed=seed, uncertainty=False)["saliency"]
    diff = float(np.abs(saliency - expected["saliency"]).max())
    expected_unc = np.concatenate([expected[k] for k in ("predictive", "aleatoric", "epistemic")], axis=1)
    print(f"\ntritonserver ready after {triton.startup_s:.2f} s; saliency request (B=2, N={samples}, K={steps}, noise={noise}) "
          f"{latency_ms:.1f} ms; max |SALIENCY - Predictor| = {diff:.3g}; the descent moved the maps by "
          f"{np.abs(expected['saliency'] - start).mean():.3f} on average")
    assert np.abs(expected["saliency"] - start).mean() >= 0.05
    assert saliency.shape == (2, 1, 64, 64) and uncertainty.shape == (2, 3, 64, 64)
    assert diff <= 1e-4
    assert np.abs(uncertainty - expected_unc).max() <= 1e-4
    # A different seed must change the answer (the request parameters reach the loop model).
    started = time.perf_counter()
    other = client.infer("saliency", [image], outputs=outputs[:1], parameters={"samples": samples, "steps": steps, "seed": seed + 1})
    print(f"second (warm) request {(time.perf_counter() - started) * 1e3:.1f} ms")
    assert np.abs(other.as_numpy("SALIENCY") - saliency).max() > 1e-4
