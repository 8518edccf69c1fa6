"""The loaded models and datasets of user pairs (Hugging Face directories, module:factory files), kept by
what identifies their files: a small least-recently-used cache shared by kdcore.jobs.pair_source and
kdcore.jobs.factory_source. The cached teachers are never mutated (jobs train clones), so sharing is safe.

    model = cached(("model", stamp(path), kind), lambda: load_hf(path, kind=kind))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CACHE: OrderedDict[tuple, Any] = OrderedDict()
CACHE_SIZE = 8  # loaded models and datasets kept (least recently used dropped first)


def stamp(path: Path) -> tuple:
    """What identifies a file or directory's contents: its resolved path and its files' sizes and mtimes."""
    p = path.expanduser().resolve()
    if p.is_dir():
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in p.iterdir() if f.is_file())
        return (str(p), tuple(files))
    st = p.stat()
    return (str(p), st.st_size, st.st_mtime_ns)


def cached(key: tuple, build: Callable[[], Any]) -> Any:
    """The value kept under `key`, else `build()` kept under it (the oldest dropped beyond CACHE_SIZE)."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget every loaded model and dataset (and the from_teacher students' temporary directories)."""
    _CACHE.clear()
