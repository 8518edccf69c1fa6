"""Private: sentences (and optional labels) of a text, JSONL or CSV source, for kdcore.data.hf_sentences.

text:  one sentence per non-blank line (unit="line") or per paragraph (unit="paragraph"); no labels
jsonl: one JSON object per non-empty line: its `text_field` string (and its `label_field` value)
csv:   a header row, then one sentence per row from the `text_field` column (and the `label_field` one)
"""

from __future__ import annotations

import csv
import io
from typing import Any

from kdcore.data._hf_documents import _BLANK_LINES, jsonl_rows, read_text
from kdcore.validation import InvalidParameterError

UNITS = ("line", "paragraph")
Label = int | str


def read_records(
    source: Any, *, format: str, text_field: str, label_field: str | None, unit: str, max_bytes: int, where: str
) -> tuple[list[str], list[Label] | None, str | None]:
    """(sentences, labels or None, file name or None) of the source; blank sentences are refused."""
    text, kind, file_name = read_text(source, format=format, text_field=text_field, max_bytes=max_bytes, where=where)
    if kind == "text":
        if label_field is not None:
            raise InvalidParameterError(
                f"A plain-text source given to {where} has no labels, but label_field={label_field!r} was "
                f"given. Give JSONL or CSV with a {label_field!r} field, or leave label_field=None."
            )
        parts = text.split("\n") if unit == "line" else _BLANK_LINES.split(text)
        texts = [p.strip() for p in parts if p.strip()]
        labels = None
    else:
        rows = jsonl_rows(text, where) if kind == "jsonl" else _csv_rows(text, text_field, label_field, where)
        texts, labels = _fields(rows, text_field, label_field, kind, where)
    if not texts:
        raise InvalidParameterError(f"The {kind} given to {where} has no text. Expected some sentences in it.")
    return texts, labels, file_name


def _csv_rows(text: str, text_field: str, label_field: str | None, where: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    for field in (text_field, label_field):
        if field is not None and (reader.fieldnames is None or field not in reader.fieldnames):
            raise InvalidParameterError(
                f"The CSV given to {where} must have a {field!r} column. Got columns {reader.fieldnames!r} "
                f"instead. Set {'text_field' if field == text_field else 'label_field'} to the column to read."
            )
    return [(n, row) for n, row in enumerate(reader, start=2)]


def _fields(
    rows: list[tuple[int, Any]], text_field: str, label_field: str | None, kind: str, where: str
) -> tuple[list[str], list[Label] | None]:
    """The text (and label) of each row with non-blank text; a missing or mistyped field is refused."""
    texts: list[str] = []
    labels: list[Label] = []
    for n, record in rows:
        value = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise InvalidParameterError(
                f"Line {n} of the {kind.upper()} given to {where} must have a string {text_field!r} field. "
                f"Got {str(record)[:80]!r} instead. Set text_field to the field that holds the text."
            )
        if not value.strip():
            continue
        texts.append(value.strip())
        if label_field is not None:
            labels.append(_label(record.get(label_field), n, label_field, kind, where))
    return texts, (labels if label_field is not None else None)


def _label(value: Any, n: int, field: str, kind: str, where: str) -> Label:
    """A class label: an integer (JSON int, or CSV digits) or a non-empty class name."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip()):
        raise InvalidParameterError(
            f"Line {n} of the {kind.upper()} given to {where} must have a {field!r} label (an integer class "
            f"id or a class name). Got {value!r} instead."
        )
    if isinstance(value, str) and kind == "csv" and value.strip().lstrip("-").isdigit():
        return int(value)
    return value.strip() if isinstance(value, str) else value
