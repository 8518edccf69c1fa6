"""A job on a user's own `module:factory` pair (JobConfig.teacher_factory/teacher_weights/
student_factory/student_weights): what its config must hold, and its data format.

    JobConfig(teacher_factory="mypkg.models:make_teacher", teacher_weights="t.safetensors",
              student_factory="mypkg.models:make_student", student_weights="s.safetensors",
              data="train.csv", data_options={"label_field": "label"}, model_kind="classifier")

`student_weights` may be empty when the student starts fresh (student_init "reinit") or from its teacher's
blocks ("from_teacher"): the student's factory then builds it with its own initialisation.
`data` is a file or folder on this machine (a table, a text file, an image folder or .zip of class
folders) or the name of a built-in dataset ("digits"); `data_options` holds `format` (auto, table, text,
images), `label_field` (a table's class column) and `tokenizer` (text: char or word). Nothing here
imports the factories: kdcore.jobs.factory_source loads the pair.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FACTORY_FIELDS = ("teacher_factory", "teacher_weights", "student_factory", "student_weights")
FACTORY_KINDS = ("classifier", "causal_lm")  # kdcore.adapters.load_factory's kinds a job trains
FACTORY_FORMATS = ("auto", "table", "text", "images")
FACTORY_DATA_OPTIONS = ("format", "label_field", "tokenizer")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")  # read without unpickling (kdcore.weights.load_state_dict)
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # as kdcore.adapters.load_factory


def uses_factories(config: Any) -> bool:
    """Whether the config names any part of a module:factory pair."""
    return any(isinstance(getattr(config, k), str) and getattr(config, k) for k in FACTORY_FIELDS)


def is_builtin_data(data: str) -> bool:
    """Whether `data` names a built-in dataset (kdcore.data.DATASETS) rather than a path."""
    from kdcore.data import DATASETS

    return data in DATASETS


def data_format(config: Any) -> str:
    """The format a factory pair's `data` is read in: "builtin", "table", "text" or "images" (the
    option `format`, else: a built-in name, a folder or .zip, a .csv/.tsv/.parquet table, text for .txt/.jsonl
    and for causal LMs, else a table)."""
    options = config.data_options if isinstance(config.data_options, dict) else {}
    fmt = options.get("format", "auto")
    if is_builtin_data(config.data):
        return "builtin"
    if fmt != "auto":
        return str(fmt)
    path = Path(config.data).expanduser()
    if path.is_dir() or path.suffix.lower() == ".zip":
        return "images"
    if path.suffix.lower() in TABLE_SUFFIXES:
        return "table"
    return "text" if config.model_kind == "causal_lm" or path.suffix.lower() in (".txt", ".jsonl") else "table"


def factory_label(config: Any) -> str:
    """ "factory:make_teacher→make_student" ("…→make_student[from teacher]" for a from_teacher student)."""
    t_spec, s_spec = str(config.teacher_factory or "?"), str(config.student_factory or "?")
    teacher, student = t_spec.partition(":")[2] or t_spec, s_spec.partition(":")[2] or s_spec
    if config.student_init == "from_teacher":
        student += "[from teacher]"
    return f"factory:{teacher}→{student}"


def fresh_student(config: Any) -> bool:
    """Whether a module:factory pair's student starts without a weights file (reinit or from_teacher with
    `student_weights` empty): its factory's own initialisation, or the teacher's blocks."""
    return uses_factories(config) and not config.student_weights


def factory_problems(config: Any) -> list[str]:
    """Every problem of a config that names a module:factory pair (empty when it is complete)."""
    p = [
        f"'{k}' must be a string; got {getattr(config, k)!r}"
        for k in FACTORY_FIELDS
        if not isinstance(getattr(config, k), str)
    ]
    if p:
        return p
    mixed = [k for k in ("teacher", "student") if getattr(config, k)]
    if mixed:
        p.append(
            f"{' and '.join(repr(k) for k in mixed)} name Hugging Face directories, but 'teacher_factory'/"
            f"'student_factory' build a module:factory pair: give one pair, remove the other's fields"
        )
    for who in ("teacher", "student"):
        p += _model_problems(config, who)
    if config.model_kind not in FACTORY_KINDS:
        p.append(
            f"'model_kind' of a module:factory pair must be one of {', '.join(FACTORY_KINDS)}; got {config.model_kind!r}"
        )
    return p + _data_problems(config)


def _model_problems(config: Any, who: str) -> list[str]:
    spec, weights = getattr(config, f"{who}_factory"), getattr(config, f"{who}_weights")
    p: list[str] = []
    if not spec:
        p.append(f"'{who}_factory' is empty: a module:factory pair needs both factories (e.g. mypkg.models:make_{who})")
    elif not _SPEC.match(spec):
        p.append(f"'{who}_factory' must look like 'package.module:factory'; got {spec!r}")
    path = Path(weights).expanduser()
    if not weights and who == "student":
        if config.student_init not in ("reinit", "from_teacher"):
            p.append(
                f"'student_weights' is empty but student_init is {config.student_init or 'pretrained'!r} (the "
                f"default of a module:factory pair), which starts from the student's weights file: give the student's "
                f"weights ({', '.join(WEIGHT_SUFFIXES)}), or choose student_init 'reinit' (fresh seeded weights) or "
                f"'from_teacher' (the teacher's blocks)"
            )
    elif not weights:
        p.append(f"'{who}_weights' is empty: give the {who}'s weights file ({', '.join(WEIGHT_SUFFIXES)})")
    elif path.suffix.lower() not in WEIGHT_SUFFIXES:
        p.append(
            f"'{who}_weights' must be a {' or '.join(WEIGHT_SUFFIXES)} file (read without running code from it); "
            f"got {weights!r}. Save the state dict with safetensors.torch.save_file"
        )
    elif not path.is_file():
        p.append(f"'{who}_weights': {weights!r} is not a file on this machine (check the path)")
    return p


def option_key_problems(options: Any, known: tuple[str, ...], owner: str = "") -> list[str]:
    """The problems of a `data_options` value: not a mapping, or keys outside `known` (`owner`: whose options)."""
    if not isinstance(options, dict):
        return [f"'data_options' must be a mapping ({', '.join(known)}); got {type(options).__name__}"]
    return [
        f"'data_options'{owner} has an unknown key {k!r} (known keys: {', '.join(known)})"
        for k in options
        if k not in known
    ]


def _data_problems(config: Any) -> list[str]:
    options = config.data_options
    p = option_key_problems(options, FACTORY_DATA_OPTIONS, " of a module:factory pair")
    if not isinstance(options, dict):
        return p
    if options.get("format", "auto") not in FACTORY_FORMATS:
        p.append(f"'data_options.format' must be one of {', '.join(FACTORY_FORMATS)}; got {options['format']!r}")
    if options.get("tokenizer", "char") not in ("char", "word"):
        p.append(f"'data_options.tokenizer' must be char or word; got {options['tokenizer']!r}")
    if "label_field" in options and (not isinstance(options["label_field"], str) or not options["label_field"]):
        p.append(f"'data_options.label_field' must be a non-empty string; got {options['label_field']!r}")
    if not config.data:
        return p + [
            "'data' is empty: give a table (.csv, .tsv, .parquet), a text file, an image folder (or .zip of "
            "class folders), or a built-in dataset name (e.g. digits)"
        ]
    if not is_builtin_data(config.data) and not Path(config.data).expanduser().exists():
        return p + [f"'data': {config.data!r} is neither a file or folder on this machine nor a built-in dataset"]
    return p if p else _format_problems(config)


def _format_problems(config: Any) -> list[str]:
    fmt = data_format(config)
    if fmt in ("table", "images") and config.model_kind != "classifier":
        return [f"data read as {fmt} trains a classifier: set model_kind 'classifier' (got {config.model_kind!r})"]
    if fmt == "text" and config.model_kind != "causal_lm":
        return [f"text data trains a language model: set model_kind 'causal_lm' (got {config.model_kind!r})"]
    return []
