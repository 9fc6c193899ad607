"""The fused CUDA kernels compile with nvcc (compile only: no GPU is needed or used)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_DIR = Path(__file__).resolve().parents[2] / "kernels" / "cuda"
KERNELS = ("salkit_langevin_step", "salkit_logit", "salkit_sigmoid", "salkit_uncertainty")


@pytest.fixture(scope="module")
def nvcc() -> str:
    path = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if Path("/usr/local/bin/nvcc").exists() else None)
    if path is None:
        pytest.skip("nvcc is not installed")
    return path


def test_langevin_kernels_compile_to_ptx_with_c_linkage(nvcc: str, tmp_path: Path) -> None:
    ptx = tmp_path / "langevin_step.ptx"
    result = subprocess.run(
        [nvcc, "--ptx", "-arch=compute_75", "-Werror", "all-warnings", "-o", str(ptx), str(CUDA_DIR / "langevin_step.cu")],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    text = ptx.read_text()
    for name in KERNELS:
        assert f".entry {name}(" in text, name  # unmangled names: loadable by cuModuleGetFunction


def test_every_cu_file_compiles(nvcc: str, tmp_path: Path) -> None:
    sources = sorted(CUDA_DIR.glob("*.cu"))
    assert sources
    for source in sources:
        result = subprocess.run([nvcc, "-c", "-arch=sm_75", "-o", str(tmp_path / f"{source.stem}.o"), str(source)],
                                capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, (source.name, result.stderr)
        assert (tmp_path / f"{source.stem}.o").stat().st_size > 0
