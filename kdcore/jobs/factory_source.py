"""Loading a user's own module:factory pair for a job (the config: kdcore.jobs.factory_config).

    pair = factory_pair(config)        # teacher and student by load_factory, and the data
    fresh = fresh_factory_student("mypkg.models:make_student", "classifier", seed=0)  # no weights file
    student = factory_student(config)  # the run's student architecture (its weights file loaded)

With `student_weights` empty (student_init reinit or from_teacher) the student is its factory's own
initialisation, built under `config.seed` (the same model every time: cached by factory, kind and seed).

The weights are read without running code from them (kdcore.adapters.load_factory). Models and datasets
are cached like a Hugging Face pair's (kdcore.jobs.source_cache): by factory, weights file (path, size,
modification time) and kind; the runner trains clones, so the cached adapters are never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdcore.adapters.base import ModelAdapter
from kdcore.data._user_common import LOCAL_MAX_BYTES
from kdcore.data.base import Dataset
from kdcore.jobs.config import JobConfig, source_label
from kdcore.jobs.factory_config import data_format, fresh_student
from kdcore.jobs.source_cache import cached, stamp
from kdcore.pairs import Pair


def factory_pair(config: JobConfig) -> Pair:
    """The Pair of a validated config with `teacher_factory` set: both models and the dataset."""
    teacher = _adapter(config.teacher_factory, config.teacher_weights, config.model_kind)
    student = factory_student(config)
    return Pair(name=source_label(config), teacher=teacher, student=student, dataset=factory_dataset(config))


def factory_student(config: JobConfig) -> ModelAdapter:
    """The student as its factory builds it, holding its weights file, or (none given) the factory's own
    initialisation under `config.seed` (shared: clone before changing it)."""
    if fresh_student(config):
        return fresh_factory_student(config.student_factory, config.model_kind, config.seed)
    return _adapter(config.student_factory, config.student_weights, config.model_kind)


def fresh_factory_student(spec: str, kind: str, seed: int = 0) -> ModelAdapter:
    """load_factory without weights: the factory's own initialisation under `seed`, built without changing
    the caller's random state (cached: shared, clone before changing it)."""
    import torch

    from kdcore.adapters.factory import load_factory

    def build() -> ModelAdapter:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return load_factory(spec, None, kind=kind)

    return cached(("factory-fresh", spec, kind, seed), build)


def _adapter(spec: str, weights: str, kind: str) -> ModelAdapter:
    from kdcore.adapters.factory import load_factory

    path = Path(weights).expanduser()
    return cached(("factory", spec, stamp(path), kind), lambda: load_factory(spec, path, kind=kind))


def factory_dataset(config: JobConfig) -> Dataset:
    """`config.data` read as its format says (kdcore.jobs.factory_config.data_format): a built-in
    dataset, a table (class column `label_field`, default "label"), text (char or word tokens), or an
    image folder (a .zip is extracted next to it first)."""
    from kdcore.data import get_dataset

    fmt, options = data_format(config), dict(config.data_options)
    if fmt == "builtin":
        return get_dataset(config.data)  # shared by the registry
    path = Path(config.data).expanduser()
    key = ("factory-data", stamp(path), fmt, repr(sorted(options.items())))
    return cached(key, lambda: _load_data(path, fmt, options))


def _load_data(path: Path, fmt: str, options: dict[str, Any]) -> Dataset:
    from kdcore.data.sources import DataSource, load_data_source

    label, tokenizer = options.get("label_field", "label"), options.get("tokenizer", "char")
    src = DataSource(fmt, str(path), label_field=label, tokenizer=tokenizer, max_bytes=LOCAL_MAX_BYTES)
    return load_data_source(src)
