"""The package layering of DESIGN.md holds: app -> analyses -> kdcore, sample_models -> kdcore."""
import ast
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


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_layering(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_only_app_imports_streamlit():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"app", "tests", ".venv"}:
            continue
        assert "streamlit" not in _imported_top_levels(path), f"{rel} imports streamlit"


def test_kdcore_imports_without_ui_libraries():
    code = ("import sys, importlib, pkgutil, kdcore\n"
            "for m in pkgutil.walk_packages(kdcore.__path__, 'kdcore.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
            "bad = [m for m in ('streamlit', 'plotly', 'captum') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_layering_check_detects_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom plotly import graph_objects\n")
    assert _imported_top_levels(bad) == {"streamlit", "plotly"}
