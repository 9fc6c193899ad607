"""scripts/demo_serve.sh: serves a bundle, asks it with tritonclient and curl, stops it with SIGTERM
and checks the exit code; whatever goes wrong, no server is left running."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salkit.base.images import decode_image, to_uint8_map
from salkit.runtime.predictor import Predictor
from tests.runtime.server_helpers import ROOT

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the script sends its second request with curl"),
]
SCRIPT = ROOT / "scripts" / "demo_serve.sh"
SEED = 7


def _env(path_first: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment `make demo` gives: the venv's sal-runtime and python first on PATH."""
    dirs = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if path_first is not None:
        dirs.insert(0, str(path_first))
    return {**os.environ, "PATH": os.pathsep.join(dirs), "OMP_NUM_THREADS": "1", **extra}


def _run(bundle: Path, image: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), str(bundle), str(image), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=150)  # fmt: skip


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _server_pid(out: Path) -> int:
    return int((out / "server.pid").read_text())


def _png_map(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L"
        return np.asarray(img, dtype=np.int16)


def test_serves_asks_twice_and_stops_cleanly(tiny_coop_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.http")
    image = tmp_path / "photo.png"  # not square and not the bundle's size: maps come back at 40×52
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "serve"

    done = _run(tiny_coop_bundle, image, out, _env(DEMO_SERVE_SEED=str(SEED)))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit code 0" in done.stdout
    assert not _running(_server_pid(out))
    with Predictor.from_bundle(tiny_coop_bundle, backend="ort-cpu", threads=1) as reference:
        rgb = decode_image(image)
        want = reference.predict([rgb], seed=SEED, uncertainty=False).saliency[0]
        other_seed = reference.predict([rgb], seed=SEED + 1, uncertainty=False).saliency[0]

    served = np.load(out / "triton_saliency.npy")
    assert served.shape == (40, 52) and served.dtype == np.float32
    assert 0.0 <= served.min() and served.max() <= 1.0
    np.testing.assert_allclose(served, want, atol=1e-5)
    # The seed is what makes the answer reproducible: another seed's map is measurably different.
    assert np.abs(other_seed - served).max() > 1e-4
    # Both PNGs are the same map rounded to 8 bits (off by one where float noise crosses a rounding edge).
    for name in ("triton_saliency.png", "curl_saliency.png"):
        got = _png_map(out / name)
        assert got.shape == (40, 52)
        assert np.abs(got - to_uint8_map(want).astype(np.int16)).max() <= 1, name
    report = (out / "triton.json").read_text()
    assert '"model": "saliency"' in report and f'"seed": {SEED}' in report
    assert f'"mean": {float(served.mean())!r}' in report


def test_a_server_that_exits_at_start_fails_the_script(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    out = tmp_path / "serve"

    done = _run(tmp_path / "no-such-bundle", image, out, _env(DEMO_SERVE_READY_TIMEOUT="60"))

    assert done.returncode != 0
    assert "the server exited (code 2) before it was ready" in done.stderr
    assert "does not exist" in done.stderr  # the server's own one-line error, from its log
    assert not _running(_server_pid(out))
    assert not any(out.glob("*saliency*"))


def test_a_server_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    # A stand-in `sal-runtime` that starts and then neither listens nor exits.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "sal-runtime"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(120)\n")
    fake.chmod(0o755)
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    out = tmp_path / "serve"

    done = _run(tmp_path / "bundle", image, out, _env(fake_bin, DEMO_SERVE_READY_TIMEOUT="2"))

    assert done.returncode != 0
    assert "the server was not ready after 2s" in done.stderr
    pid = _server_pid(out)
    assert not _running(pid), f"the script left process {pid} running"
    assert not any(out.glob("*saliency*"))
