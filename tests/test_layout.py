"""The package layering of DESIGN.md holds: app -> analyses -> kdcore, sample_models -> kdcore.

Imports are read from the syntax tree: `import x`, `from x import y`, and the string arguments of
`importlib.import_module("x")`, `import_module("x")` and `__import__("x")`; any other string in
code that names a forbidden module ("x", "x.y" or "x.y:factory") counts too, since it can reach
the module by a computed import.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "kdcore": {"streamlit", "plotly", "app", "analyses", "sample_models", "captum"},
    "analyses": {"streamlit", "app", "sample_models"},
    "sample_models": {"streamlit", "plotly", "app", "analyses"},
}


_DYNAMIC_IMPORTS = {"import_module", "__import__"}
_MODULE_STRING = re.compile(r"^([A-Za-z_]\w*)(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


def _dynamic_import_target(node: ast.AST) -> str | None:
    """The module a call like importlib.import_module("x.y") or __import__("x") names, else None."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    arg = node.args[0]
    if name in _DYNAMIC_IMPORTS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (target := _dynamic_import_target(node)) is not None:
            names.add(target.split(".")[0])
    return names


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _module_strings(path: Path) -> set[str]:
    """Top-level modules named by string constants in code ("x", "x.y", "x.y:f"), docstrings excluded."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    return {
        node.value.split(":")[0].split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and _MODULE_STRING.match(node.value)
    }


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layering(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_kdcore_names_no_sample_or_ui_package_even_in_a_string():
    """kdcore reaches sample pairs only through its pair registry, never by a module name."""
    banned = {"sample_models", "app", "analyses", "streamlit", "plotly"}
    offenders = [
        f"{p.relative_to(ROOT)} names {sorted(bad)}"
        for p in sorted((ROOT / "kdcore").rglob("*.py"))
        if (bad := _module_strings(p) & banned)
    ]
    assert not offenders, "kdcore names a package it must not reach:\n" + "\n".join(offenders)


def test_only_app_imports_streamlit():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"app", "tests", ".venv"}:
            continue
        assert "streamlit" not in _imported_top_levels(path), f"{rel} imports streamlit"


def test_kdcore_imports_without_ui_libraries():
    code = (
        "import sys, importlib, pkgutil, kdcore\n"
        "for m in pkgutil.walk_packages(kdcore.__path__, 'kdcore.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = [m for m in ('streamlit', 'plotly', 'captum', 'sample_models', 'app', 'analyses')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_layering_check_detects_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom plotly import graph_objects\n")
    assert _imported_top_levels(bad) == {"streamlit", "plotly"}


def test_layering_check_detects_imports_by_string(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import importlib\n"
        "from importlib import import_module\n"
        'a = importlib.import_module("sample_models")\n'
        "b = import_module('app.state')\n"
        'c = __import__("analyses.cka", fromlist=["x"])\n'
        "d = importlib.import_module(some_variable)\n"
    )
    assert _imported_top_levels(bad) == {"importlib", "sample_models", "app", "analyses"}
    hidden = tmp_path / "hidden.py"
    hidden.write_text(
        '"""Docstrings may mention sample_models."""\n'
        'TARGET = "sample_models:load_pair"\n'
        'MESSAGE = "load a sample_models pair"\n'
    )
    assert _module_strings(hidden) == {"sample_models"}


MAX_FUNCTION_LINES = 49  # from `def` (decorators not counted) to the function's last line (issue #12: under 50)


def _long_functions(path: Path, root: Path = ROOT) -> list[str]:
    """'path:line name (N lines)' for each function in the module longer than MAX_FUNCTION_LINES."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(root)
    return [
        f"{rel}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_kdcore_functions_are_short():
    long = [hit for path in sorted((ROOT / "kdcore").rglob("*.py")) for hit in _long_functions(path)]
    assert not long, (
        f"Functions in kdcore must be at most {MAX_FUNCTION_LINES} lines (def to last line). "
        f"Split these into smaller helpers: {long}"
    )


def test_function_length_check_detects_a_long_function(tmp_path):
    at_limit = "def at_limit():\n" + "    x = 1\n" * (MAX_FUNCTION_LINES - 1)
    too_long = "class C:\n    def too_long(self):\n" + "        x = 1\n" * MAX_FUNCTION_LINES
    path = tmp_path / "mod.py"
    path.write_text(at_limit + too_long)
    assert _long_functions(path, tmp_path) == [
        f"mod.py:{MAX_FUNCTION_LINES + 2} too_long ({MAX_FUNCTION_LINES + 1} lines)"
    ]
