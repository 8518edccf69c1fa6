"""A user's data named by format and place, read by one dispatch: the app's sidebar and a module:factory job
both load their data through `load_data_source`.

    ds = load_data_source(DataSource("table", "train.csv", label_field="species"))
    ds = load_data_source(DataSource("text", "corpus.txt", tokenizer="word"))
    ds = load_data_source(DataSource("hf_text", "corpus.jsonl", teacher_dir="t", student_dir="s", context_length=64))

Formats: "builtin" (a dataset of kdcore.data.DATASETS by name), "table" (.csv/.tsv/.parquet with a class
column), "text" (char or word tokens), "images" (a folder of class folders, or a .zip of one: extracted next
to it, bounded by `unzip_max_bytes`), "hf_text" (a causal LM's text, tokenised by the teacher's own
tokenizer) and "hf_sentences" (padded sentences for encoders; with `label_field`, a sequence classifier's
labelled sentences).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kdcore.data._user_common import LOCAL_MAX_BYTES
from kdcore.data.base import Dataset
from kdcore.validation import InvalidParameterError

UNZIP_MAX_BYTES = 1 << 30  # largest total size an image-folder .zip may expand to


@dataclass(frozen=True)
class DataSource:
    """Where a user's data lies and how to read it (hashable: a cache key as it stands)."""

    format: str  # one of FORMATS
    location: str  # a built-in dataset's name, or a file or folder on this machine
    label_field: str | None = None  # a table's class column ("label" when None); a sequence classifier's label key
    tokenizer: Literal["char", "word"] = "char"  # "text"
    teacher_dir: str | None = None  # "hf_*": the model directory whose tokenizer reads the text
    student_dir: str | None = None  # "hf_*": checked to tokenise alike
    context_length: int = 128  # "hf_text": tokens per row; "hf_sentences": the padded length
    text_field: str = "text"  # "hf_*": the JSONL key or CSV column holding the text
    max_bytes: int = LOCAL_MAX_BYTES  # largest data file read
    unzip_max_bytes: int = UNZIP_MAX_BYTES

    @property
    def path(self) -> Path:
        return Path(self.location).expanduser()


def _builtin(src: DataSource) -> Dataset:
    from kdcore.data.registry import get_dataset

    return get_dataset(src.location)  # shared by the registry


def _table(src: DataSource) -> Dataset:
    from kdcore.data.table import load_table

    return load_table(src.path, label_column=src.label_field or "label", max_bytes=src.max_bytes)


def _text(src: DataSource) -> Dataset:
    from kdcore.data.text import load_text

    return load_text(src.path, tokenizer=src.tokenizer, max_bytes=src.max_bytes)


def _images(src: DataSource) -> Dataset:
    from kdcore.data.archive import extract_zip
    from kdcore.data.image_folder import load_image_folder

    folder = src.path if src.path.is_dir() else extract_zip(src.path, max_bytes=src.unzip_max_bytes)
    return load_image_folder(folder, max_bytes=src.max_bytes)


def _model_dir(src: DataSource) -> str:
    if not src.teacher_dir:
        raise InvalidParameterError(
            f"Data of format {src.format!r} is tokenised by the teacher's own tokenizer, but no teacher directory "
            f"was given. Name the teacher's Hugging Face directory (teacher_dir)."
        )
    return src.teacher_dir


def _hf_rows(src: DataSource) -> Dataset:
    """A causal LM's text rows (hf_text) or padded sentences (hf_sentences), by the teacher's tokenizer."""
    from kdcore.data.hf_sentences import load_hf_sentences
    from kdcore.data.hf_text import load_hf_text

    common: dict[str, Any] = {"student_dir": src.student_dir, "text_field": src.text_field, "max_bytes": src.max_bytes}
    if src.format == "hf_text":
        return load_hf_text(src.path, _model_dir(src), context_length=src.context_length, **common)
    return load_hf_sentences(
        src.path, _model_dir(src), max_length=src.context_length, label_field=src.label_field, **common
    )


# the loader of each format: DataSource -> Dataset
LOADERS: dict[str, Callable[[DataSource], Dataset]] = {
    "builtin": _builtin,
    "table": _table,
    "text": _text,
    "images": _images,
    "hf_text": _hf_rows,
    "hf_sentences": _hf_rows,
}
FORMATS = tuple(LOADERS)


def load_data_source(src: DataSource) -> Dataset:
    """The Dataset `src` names, read by its format's loader (their errors say what is wrong with the file)."""
    loader = LOADERS.get(src.format)
    if loader is None:
        raise InvalidParameterError(
            f"Unknown data format {src.format!r}; the formats are {', '.join(FORMATS)}. "
            f"Name one of them (a table, text, images, or a built-in dataset)."
        )
    return loader(src)
