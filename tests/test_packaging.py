"""Packaging rules: the four folders import as salkit.*, the runtime needs no torch, CLIs start."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"train": "salkit.train", "export": "salkit.export", "runtime": "salkit.runtime", "kernels": "salkit.kernels", "base": "salkit.base"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = set()
    for folder, prefix in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([prefix, *rel.parts]))
    assert on_disk == listed, f"unlisted: {on_disk - listed}, listed but absent: {listed - on_disk}"


def test_package_dir_maps_the_four_folders() -> None:
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert {v: k for k, v in mapping.items()} == FOLDERS


_NO_TORCH = """
import builtins, importlib, pkgutil, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch.") or name.startswith("torchvision"):
        raise ModuleNotFoundError("No module named 'torch' (blocked by test)")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import salkit.runtime, salkit.kernels
failed = []
for pkg in (salkit.runtime, salkit.kernels):
    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as err:
            if "torch" in str(err):
                failed.append(f"{info.name}: {err}")
        except ImportError as err:  # optional GPU/web deps may be absent; torch must not be why
            if "torch" in str(err):
                failed.append(f"{info.name}: {err}")
assert not failed, failed
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch got imported"
print("ok")
"""


def test_runtime_and_kernels_import_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("script", ["train-coop", "train-qefpn", "export-trt", "sal-runtime", "sal-data"])
def test_console_scripts_show_help(script: str) -> None:
    exe = Path(sys.executable).with_name(script)
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_sal_runtime_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from salkit.runtime.cli import main\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'fastapi', 'uvicorn') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
