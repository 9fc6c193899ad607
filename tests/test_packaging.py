"""Packaging and layering rules: src/salkit is the import path, each layer imports only what
the layering allows (kernels, base and runtime never torch), no import cycles, CLIs start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests.import_graph import FOLDERS, ROOT, SRC, cycles, import_graph

# The layering (docs/architecture.md): what each layer may import of salkit besides itself.
# base: the torch-free conventions (the error type, atomic writes, images, dataset layouts,
# metrics) every stage shares; kernels: numerical primitives, copied as-is into Triton
# repositories with the one module of base they raise from (errors, standard library only);
# train and runtime stand side by side on those two and never import each other; export turns
# train's checkpoints into runtime's bundles, so it reads the bundle format and may run graphs
# through the backends. experiments/ (the reproduction harness) is not a layer: it may import anything.
MAY_IMPORT = {
    "salkit.base": (),
    "salkit.kernels": ("salkit.base.errors",),
    "salkit.train": ("salkit.kernels", "salkit.base"),
    "salkit.runtime": ("salkit.kernels", "salkit.base"),
    # export checks what it writes with the runtime itself (the precision gate runs Predictor)
    "salkit.export": ("salkit.kernels", "salkit.base", "salkit.train", "salkit.runtime"),
}
# Imports against the layering that are still to go, each removed with the change that fixes it.
# An entry that no longer occurs fails the test too, so this list only shrinks.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()
TORCH_FREE = ("salkit.kernels", "salkit.base", "salkit.runtime")
TORCH = ("torch", "torchvision")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_tree_is_the_import_path() -> None:
    """pyproject finds packages under src/, and every folder of .py files there is a package."""
    assert _pyproject()["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
    assert sorted(p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(FOLDERS)
    loose = [str(folder.relative_to(ROOT)) for folder in SRC.rglob("*")
             if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
             and not (folder / "__init__.py").exists()]
    assert not loose, f"folders of modules without __init__.py (not installed): {loose}"


def test_the_installed_salkit_is_this_tree() -> None:
    import salkit.runtime

    assert Path(salkit.runtime.__file__).resolve() == SRC / "runtime" / "__init__.py"


_NO_TORCH = """
import builtins, importlib, pkgutil, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch.") or name.startswith("torchvision"):
        raise ModuleNotFoundError("No module named 'torch' (blocked by test)")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import salkit.runtime, salkit.kernels, salkit.base
failed = []
for pkg in (salkit.runtime, salkit.kernels, salkit.base):
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


def test_runtime_kernels_and_base_import_without_torch() -> None:
    result = subprocess.run([sys.executable, "-c", _NO_TORCH], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_every_layer_imports_only_what_the_layering_allows() -> None:
    modules = import_graph()
    assert {_layer(m) for m in modules} == set(MAY_IMPORT)
    broken, known = [], set()
    for module in modules.values():
        layer = _layer(module.name)
        allowed = (layer, *MAY_IMPORT[layer])
        for target, line in sorted(module.salkit.items()):
            if (module.name, target) in KNOWN_VIOLATIONS:
                known.add((module.name, target))
            elif not _within(target, allowed):
                broken.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert not broken, "imports against the layering (see MAY_IMPORT):\n" + "\n".join(broken)
    assert known == KNOWN_VIOLATIONS, f"fixed, remove from KNOWN_VIOLATIONS: {sorted(KNOWN_VIOLATIONS - known)}"


def test_torch_free_layers_never_import_torch_even_lazily() -> None:
    offending = [f"{m.path.relative_to(ROOT)}:{m.external[name]} imports {name}"
                 for m in import_graph().values() if _within(m.name, TORCH_FREE)
                 for name in TORCH if name in m.external]
    assert not offending, offending


def test_no_import_cycles_between_salkit_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(c) for c in found)


def test_the_import_graph_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "runtime" / "a.py").write_text("def f():\n    from salkit.runtime import b\n    import torch\n")
    (tmp_path / "runtime" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from salkit.runtime.a import f\n")
    (tmp_path / "base" / "c.py").write_text("from ..train import d\n")
    (tmp_path / "train" / "d.py").write_text("")
    modules = import_graph(tmp_path)
    assert modules["salkit.runtime.a"].salkit == {"salkit.runtime.b": 2} and "torch" in modules["salkit.runtime.a"].external
    assert modules["salkit.base.c"].salkit == {"salkit.train.d": 1}
    assert cycles(modules) == [["salkit.runtime.a", "salkit.runtime.b"]]


@pytest.mark.parametrize("script", ["train-coop", "train-qefpn", "export-trt", "sal-runtime", "sal-data"])
def test_console_scripts_show_help(script: str) -> None:
    exe = Path(sys.executable).with_name(script)
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_sal_runtime_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from salkit.runtime.cli.main import main\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'fastapi', 'uvicorn') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
