"""The tests' helpers for the benchmarks (tiny Hugging Face pairs built from configs), loaded from their
file: the benchmarks import the installed packages and never edit sys.path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def hf_pairs() -> ModuleType:
    """tests/helpers/hf_pairs.py as a module (llama_config, save_model, llama_pair, ...)."""
    path = ROOT / "tests" / "helpers" / "hf_pairs.py"
    spec = importlib.util.spec_from_file_location("kdwb_bench_hf_pairs", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
