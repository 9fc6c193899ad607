"""The static import graph of salkit's modules, read from the source (AST, nothing imported).

Every ``import`` statement counts wherever it stands: at module level, inside a function (a lazy
import is still a dependency), under ``if TYPE_CHECKING:``. ``from package import name`` is an
edge to ``package.name`` when that is a module, else to ``package``. Importing a submodule is not
counted as importing its parent packages' ``__init__``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tree is the import path: src/salkit/<layer>/... is salkit.<layer>....
SRC = ROOT / "src" / "salkit"
FOLDERS = {"kernels": "salkit.kernels", "base": "salkit.base", "train": "salkit.train",
           "export": "salkit.export", "runtime": "salkit.runtime"}


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    salkit: dict[str, int] = field(default_factory=dict)  # imported salkit module → first line
    external: dict[str, int] = field(default_factory=dict)  # imported top-level distribution → first line


def _modules(root: Path) -> dict[str, Module]:
    """Every module under ``root`` (a ``salkit`` package folder), named by its path."""
    found = {}
    for folder, prefix in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join([prefix, *(parts[:-1] if is_package else parts)])
            found[name] = Module(name, path, is_package)
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, modules: dict[str, Module]) -> str | None:
    """The longest prefix of ``name`` that is a salkit module of the tree."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path = SRC) -> dict[str, Module]:
    modules = _modules(root)
    for module in modules.values():
        for node in ast.walk(ast.parse(module.path.read_text(), str(module.path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = _absolute(module, node)
                targets = [f"{package}.{a.name}" if f"{package}.{a.name}" in modules else package for a in node.names]
            for target in targets:
                if target == "salkit" or target.startswith("salkit."):
                    known = _known(target, modules)
                    if known is not None and known != module.name:
                        module.salkit.setdefault(known, node.lineno)
                else:
                    module.external.setdefault(target.split(".")[0], node.lineno)
    return modules


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in modules[name].salkit:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in modules:
        if name not in index:
            visit(name)
    return found
