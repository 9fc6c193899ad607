"""The runtime's import rule, read from its source: no torch, no training or export code.

``sal-runtime bench --compare-torch`` reaches torch through an entry point (salkit.bench_baselines),
so even the bench names no training module; this test reads every runtime file's imports (also the
lazy ones inside functions), which the import-time check in tests/test_packaging.py cannot see.
"""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
FORBIDDEN = ("torch", "torchvision", "salkit.train", "salkit.export")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_runtime_source_imports_no_torch_train_or_export() -> None:
    offences = [
        f"{path.relative_to(RUNTIME.parent)}: {name}"
        for path in sorted(RUNTIME.rglob("*.py"))
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert offences == []


def test_the_rule_sees_lazy_imports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sample = tmp_path / "lazy.py"
    sample.write_text("def f():\n    from salkit.train import bench_torch\n    import torch.nn\n")
    assert _imports(sample) == ["salkit.train", "torch.nn"]
