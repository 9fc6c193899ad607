"""No salkit module outside the kinds folders branches on a model kind's name.

What differs per kind lives in ``runtime/kinds/`` and ``export/kinds/`` (docs/architecture.md,
"Model kinds"); everywhere else asks the kind object. Read from the source (AST): a comparison
(==, !=, in, not in) with a kind name as a string literal, alone or in a literal tuple / list /
set, and, in runtime/ and export/, reading a manifest's per-kind settings (``manifest.coop``).
train/ defines the models themselves (each model class states its kind) and is not checked for
attributes; its per-kind baselines are a dict keyed by name, not a comparison.
"""

from __future__ import annotations

import ast
from pathlib import Path

from salkit.export.kinds import EXPORT_KINDS
from salkit.runtime.kinds import KINDS
from tests.import_graph import FOLDERS, SRC

KIND_FOLDERS = (SRC / "runtime" / "kinds", SRC / "export" / "kinds")
KIND_NAMES = set(KINDS) | set(EXPORT_KINDS)


def _sources() -> list[Path]:
    return [path for folder in FOLDERS for path in sorted((SRC / folder).rglob("*.py"))
            if not any(path.is_relative_to(kinds) for kinds in KIND_FOLDERS)]


def _names_a_kind(node: ast.expr) -> bool:
    values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return any(isinstance(v, ast.Constant) and v.value in KIND_NAMES for v in values)


def kind_branches(text: str, where: str) -> list[str]:
    """The kind branches in the source ``text`` of the file at ``where`` (relative to src/salkit, e.g. ``runtime/predictor.py``)."""
    found = []
    attributes = Path(where).parts[0] in ("runtime", "export")
    for node in ast.walk(ast.parse(text, where)):
        if isinstance(node, ast.Compare) and any(_names_a_kind(side) for side in (node.left, *node.comparators)):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif attributes and isinstance(node, ast.Attribute) and node.attr in KIND_NAMES and not ast.unparse(node).startswith("salkit."):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_outside_the_kinds_folders_branches_on_a_kind_name() -> None:
    assert {"coop", "qefpn"} <= KIND_NAMES
    # kind_branches reads attributes by the file's first folder, so the paths must start at the package
    assert {path.relative_to(SRC).parts[0] for path in _sources()} >= {"runtime", "export"}
    found = [hit for path in _sources() for hit in kind_branches(path.read_text(), path.relative_to(SRC).as_posix())]
    assert not found, "kind branches outside runtime/kinds and export/kinds:\n" + "\n".join(found)


def test_the_check_sees_the_branches_it_forbids() -> None:
    text = ('if manifest.model_kind == "coop": pass\n'
            'x = kind in ("qefpn", "other")\n'
            'y = manifest.qefpn["broyden_tol"]\n'
            'z = kind == "stable" or salkit.kernels.coop.LOGIT_EPS\n')
    assert [hit.split(":")[1] for hit in kind_branches(text, "runtime/sample.py")] == ["1", "2", "3"]
    assert [hit.split(":")[1] for hit in kind_branches(text, "train/sample.py")] == ["1", "2"]  # attributes: runtime, export
