"""A real Triton Inference Server serves the repository written with ``--triton-graph-backend python``.

The server is the one inside the ``nvidia-pytriton`` wheel (Python backend only, runs on a CPU).
It is installed once, with the stub's environment (numpy < 2 and onnxruntime), into
``~/.cache/salkit-triton`` (``$XDG_CACHE_HOME`` respected); the wheel is not a salkit dependency
because it pins numpy < 2 for the whole environment. A failing install fails the test; a server
binary that cannot run on this platform skips it with the reason. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from salkit.export.triton import write_triton_repo
from salkit.runtime.bundle import load_bundle

PYTRITON = "nvidia-pytriton==0.7.0"
STUB_PACKAGES = ["numpy<2", "onnxruntime"]
READY_TIMEOUT_S = 120.0
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "salkit-triton" / "pytriton-0.7.0"


def _pip_target(target: Path, packages: list[str], *flags: str) -> Path:
    """``pip install --target`` once; the directory appears only when the install is complete."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(tmp), *flags, *packages]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    try:
        tmp.rename(target)
    except OSError:  # another test process finished the same install first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


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


def _runnable_stub(server_root: Path, env: dict) -> Path:
    """The Python stub whose libpython this machine has (the stub embeds the system's libpython)."""
    reasons = []
    for stub in sorted((server_root / "python_backend_stubs").glob("*/triton_python_backend_stub")):
        result = subprocess.run(["ldd", str(stub)], capture_output=True, text=True, env=env, timeout=30)
        missing = [line.strip() for line in result.stdout.splitlines() if "not found" in line]
        if result.returncode == 0 and not missing:
            return stub
        reasons.append(f"{stub.parent.name}: {'; '.join(missing) or result.stderr.strip()}")
    pytest.skip(f"no Python backend stub of {PYTRITON} can load here ({', '.join(reasons)})")


@pytest.fixture(scope="module")
def triton(strong_coop_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"{PYTRITON} ships tritonserver for Linux x86_64/aarch64 only, not {sys.platform} {platform.machine()}")
    server_pkg = _pip_target(CACHE / "server", [PYTRITON], "--no-deps")
    stub_env = _pip_target(CACHE / f"stub-env-py{sys.version_info.major}{sys.version_info.minor}", STUB_PACKAGES)
    root = server_pkg / "pytriton" / "tritonserver"
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(server_pkg / "nvidia_pytriton.libs"),
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
    shutil.copy2(_runnable_stub(root, env), backends / "python" / "triton_python_backend_stub")
    repo = work / "repo"
    write_triton_repo(load_bundle(strong_coop_bundle), strong_coop_bundle, repo, graph_backend="python",
                      extra_sys_path=[str(stub_env)])
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

    with Predictor.from_bundle(strong_coop_bundle, threads=2) as predictor:
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
