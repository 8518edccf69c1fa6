"""The project installs as a package: runtime requirements without test tools, package data for every
file read at run time, no sys.path edits, and the installed packages importable from any folder."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kdcore", "analyses", "app", "sample_models")
TEST_TOOLS = {"pytest", "playwright", "ruff", "mypy"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def _sys_path_uses(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]


def _runtime_data_files() -> list[Path]:
    """Files other than Python sources inside the packages (what the code reads at run time)."""
    return sorted(
        p.relative_to(ROOT)
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


def test_requirements_txt_is_the_runtime_dependencies_without_test_tools():
    reqs = _requirements()
    assert sorted(reqs) == sorted(_pyproject()["project"]["dependencies"]), (
        "requirements.txt and [project].dependencies in pyproject.toml must list the same requirements"
    )
    assert not {_name(r) for r in reqs} & TEST_TOOLS


def test_torch_is_pinned_and_the_dev_extra_holds_the_test_tools():
    project = _pyproject()["project"]
    torch = [r for r in project["dependencies"] if _name(r) == "torch"]
    assert len(torch) == 1 and re.fullmatch(r"torch==[\d.]+", torch[0]), torch
    assert TEST_TOOLS <= {_name(r) for r in project["optional-dependencies"]["dev"]}


def test_no_code_edits_sys_path():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for folder in (*PACKAGES, "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line in _sys_path_uses(path)
    ]
    assert not offenders, "sys.path edited (install the project instead: pip install -e .):\n" + "\n".join(offenders)


def test_the_sys_path_check_detects_an_edit(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nsys.path.insert(0, '..')\nprint(sys.argv)\n")
    assert _sys_path_uses(bad) == [2]


def test_no_bench_script_shadows_a_package():
    # `python bench/x.py` puts bench/ first on sys.path: bench/app.py would be imported as `app`.
    clashes = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.stem in (*PACKAGES, "tests"))
    assert not clashes, f"rename {clashes}: each shadows a package of the same name"


def test_every_runtime_data_file_is_package_data():
    globs = _pyproject()["tool"]["setuptools"]["package-data"]
    files = _runtime_data_files()
    assert Path("sample_models/manifest.json") in files
    missing = [
        str(f)
        for f in files
        if not any(fnmatch.fnmatch(str(f.relative_to(f.parts[0])), g) for g in globs.get(f.parts[0], []))
    ]
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


@pytest.mark.slow
def test_the_wheel_holds_the_packages_and_their_data(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    with zipfile.ZipFile(out / res.stdout.strip().splitlines()[-1]) as wheel:
        names = set(wheel.namelist())
        metadata = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    expected = {str(f) for f in _runtime_data_files()} | {
        "app/main.py",
        "app/views/overview.py",
        "kdcore/__main__.py",
        "kdcore/doctor/__init__.py",
    }
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    assert "Requires-Dist: torch==" in metadata


@pytest.mark.slow
def test_the_installed_packages_work_from_another_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(KDWB_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    code = (
        "import kdcore, analyses, app, sample_models\n"
        "pair = sample_models.load_pair('digits')\n"
        "print(pair.dataset.size, type(pair.teacher).__name__)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, (
        f"the project is not installed in this Python: run `make setup` (pip install -e '.[dev]').\n{res.stderr}"
    )
    assert res.stdout.split() == ["10", "ModuleAdapter"]
    cli = subprocess.run(
        [sys.executable, "-m", "kdcore", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert cli.returncode == 0 and cli.stdout.startswith("usage: python -m kdcore"), cli.stderr
