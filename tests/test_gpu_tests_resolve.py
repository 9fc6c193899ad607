"""The ``gpu`` tests call only salkit names that exist, checked here on any machine.

Without an NVIDIA GPU the ``gpu`` tests are skipped, so a renamed or deleted function they call
would go unnoticed until someone runs them on a GPU. This reads them (AST, nothing is run) and
checks every salkit name they reach: imports (module level, inside the test, ``importorskip``),
attribute chains on modules and classes, methods and attributes used on instances the test
creates, and the keywords and argument counts of every call to a salkit function or class.
Names of other libraries (tensorrt, torch, cupy) are not checked: they may be absent here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Instance:
    """A value the test created by calling a salkit class (or a function annotated to return one)."""

    cls: type


@dataclass(frozen=True)
class Method:
    """A method looked up on an :class:`Instance`: called without its ``self``."""

    function: Any


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _marks_gpu(node: ast.AST) -> bool:
    return any(_dotted(n) == "pytest.mark.gpu" for n in ast.walk(node))


def gpu_tests(tree: ast.Module) -> list[ast.FunctionDef]:
    whole_module = any(isinstance(n, ast.Assign) and any(_dotted(t) == "pytestmark" for t in n.targets)
                       and _marks_gpu(n.value) for n in tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            if whole_module or any(_marks_gpu(d) for d in node.decorator_list):
                found.append(node)
    return found


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if module.startswith("salkit") and (err.name or "").startswith("salkit"):
            raise AssertionError(f"{module} cannot be imported: {err}") from None
        raise


def _member(owner: Any, name: str, where: str) -> Any:
    if hasattr(owner, name):
        return getattr(owner, name)
    if inspect.ismodule(owner) and hasattr(owner, "__path__") and importlib.util.find_spec(f"{owner.__name__}.{name}"):
        return _import(f"{owner.__name__}.{name}")
    if inspect.isclass(owner) and name in _instance_attributes(owner):
        return None  # exists, type unknown
    raise AssertionError(f"{where}: {getattr(owner, '__name__', owner)!r} has no attribute {name!r}")


def _instance_attributes(cls: type) -> set[str]:
    """Names a class's methods assign on ``self`` and its annotated fields, over the MRO."""
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= set(getattr(klass, "__annotations__", {}))
        try:
            tree = ast.parse(inspect.getsource(klass).lstrip())
        except (OSError, TypeError, SyntaxError, IndentationError):
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                        names.add(leaf.attr)
    return names


def _check_call(fn: Any, call: ast.Call, where: str) -> Any:
    """Bind the call's argument count and keywords to ``fn``'s signature; returns what it makes."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    unbound = fn.function if isinstance(fn, Method) else fn
    try:
        signature = inspect.signature(unbound)
    except (TypeError, ValueError):
        return None
    if isinstance(fn, Method):
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    fn = unbound
    try:
        signature.bind(*call.args, **{k.arg: k.value for k in call.keywords if k.arg})
    except TypeError as err:
        raise AssertionError(f"{where}: {getattr(fn, '__qualname__', fn)}{signature} does not accept this call: {err}") from None
    if inspect.isclass(fn):
        return Instance(fn)
    try:
        made = typing.get_type_hints(fn).get("return")
    except Exception:
        return None
    return Instance(made) if inspect.isclass(made) and made.__module__.startswith("salkit") else None


class _Resolver:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[str, Any] = {}

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(TESTS.parent)}:{getattr(node, 'lineno', '?')}"

    def bind_imports(self, statements: list[ast.stmt] | ast.AST) -> None:
        nodes = statements if isinstance(statements, list) else list(ast.walk(statements))
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("salkit"):
                module = _import(node.module)
                for alias in node.names:
                    self.names[alias.asname or alias.name] = _member(module, alias.name, self.where(node))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("salkit"):
                        module = _import(alias.name)
                        self.names[alias.asname or "salkit"] = module if alias.asname else _import("salkit")

    def value(self, node: ast.AST) -> Any:
        """What an expression refers to, when the test's names make that known; else None."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            owner = self.value(node.value)
            if owner is None:
                return None
            if isinstance(owner, Instance):
                member = _member(owner.cls, node.attr, self.where(node))
                return Method(member) if inspect.isfunction(member) else member
            if inspect.ismodule(owner) or inspect.isclass(owner):
                return _member(owner, node.attr, self.where(node))
            return None
        if isinstance(node, ast.Call):
            if _dotted(node.func) == "pytest.importorskip" and node.args and isinstance(node.args[0], ast.Constant):
                name = str(node.args[0].value)
                return _import(name) if name.startswith("salkit") else None
            fn = self.value(node.func)
            if isinstance(fn, Method) or (fn is not None and callable(fn) and not isinstance(fn, Instance)):
                return _check_call(fn, node, self.where(node))
        return None

    def walk(self, function: ast.FunctionDef) -> int:
        """Check the function's statements in order; returns how many salkit references it checked."""
        self.bind_imports(function)
        checked = 0
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                made = self.value(node.value)
                if made is not None:
                    self.names[node.targets[0].id] = made
            elif isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
                made = self.value(node.context_expr)
                if made is not None:
                    self.names[node.optional_vars.id] = made
            if isinstance(node, (ast.Attribute, ast.Call)) and self.value(node) is not None:
                checked += 1
        return checked


def _gpu_test_files() -> list[Path]:
    here = Path(__file__).resolve()
    return sorted(p for p in TESTS.rglob("test_*.py") if p != here and "pytest.mark.gpu" in p.read_text())


@pytest.mark.parametrize("path", _gpu_test_files(), ids=lambda p: str(p.relative_to(TESTS)))
def test_gpu_tests_reach_only_existing_salkit_names(path: Path) -> None:
    tree = ast.parse(path.read_text())
    functions = gpu_tests(tree)
    assert functions, f"{path} mentions pytest.mark.gpu but no test carries it"
    resolver = _Resolver(path)
    resolver.bind_imports(tree.body)
    for function in functions:
        scoped = _Resolver(path)
        scoped.names = dict(resolver.names)
        scoped.walk(function)


def test_the_checker_catches_a_missing_function_a_wrong_keyword_and_a_missing_method() -> None:
    source = '''
import pytest
pytestmark = pytest.mark.gpu

def test_missing():
    engines = pytest.importorskip("salkit.export.engines_trt")
    engines.build_engine_file("a.onnx", "a.plan")

def test_keyword():
    from salkit.runtime.backends.trt import TrtRunner
    with TrtRunner("a.plan", None, cuda_graph=True) as runner:
        runner.allocate({})

def test_instance_method():
    from salkit.runtime.backends.trt import TrtRunner
    runner = TrtRunner("a.plan")
    runner.launch_graph()
'''
    tree = ast.parse(source)
    errors = []
    for function in gpu_tests(tree):
        resolver = _Resolver(TESTS / "test_fake_gpu.py")
        try:
            resolver.walk(function)
        except AssertionError as err:
            errors.append(str(err))
    assert len(errors) == 3, errors
    assert "build_engine_file" in errors[0] and "cuda_graph" in errors[1] and "launch_graph" in errors[2]
