"""Private: the documents of a text, JSONL or CSV source, for kdcore.data.hf_text; reading the source
(read_text) and its JSONL lines (jsonl_rows) are shared with _hf_records (kdcore.data.hf_sentences).

text:  paragraphs (runs of lines separated by blank lines), each kept with its inner line breaks
jsonl: one JSON object per non-empty line; its `text_field` must be a string
csv:   a header row, then one document per row from the `text_field` column
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from kdcore.data._user_common import read_source
from kdcore.validation import InvalidParameterError

FORMATS = ("auto", "text", "jsonl", "csv")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def read_documents(
    source: Any, *, format: str, text_field: str, max_bytes: int, where: str
) -> tuple[list[str], str | None]:
    """The non-empty documents of the source, and its file name (None for bytes)."""
    text, kind, file_name = read_text(source, format=format, text_field=text_field, max_bytes=max_bytes, where=where)
    if kind == "jsonl":
        docs = _jsonl(text, text_field, where)
    elif kind == "csv":
        docs = _csv(text, text_field, where)
    else:
        docs = [p.strip("\n") for p in _BLANK_LINES.split(text)]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise InvalidParameterError(f"The {kind} given to {where} has no text. Expected some writing in it.")
    return docs, file_name


def read_text(source: Any, *, format: str, text_field: str, max_bytes: int, where: str) -> tuple[str, str, str | None]:
    """(the source's text with "\\n" line ends, its kind "text"/"jsonl"/"csv", its file name or None),
    after checking format and text_field; "auto" goes by the file name's extension."""
    check_format(format, text_field, where=where)
    data, file_name = read_source(source, name="source", where=where, max_bytes=max_bytes)
    kind = format if format != "auto" else _by_extension(file_name)
    return _decode(data, where), kind, file_name


def jsonl_rows(text: str, where: str) -> list[tuple[int, Any]]:
    """(line number, parsed JSON value) of every non-blank line; a line that is not JSON is refused."""
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as err:
            raise InvalidParameterError(
                f"Line {n} of the JSONL given to {where} is not valid JSON ({err.msg}). "
                f"Expected one JSON object per line."
            ) from None
    return rows


def check_format(format: Any, text_field: Any, *, where: str) -> None:
    """format in FORMATS, text_field a non-empty string."""
    if format not in FORMATS:
        raise InvalidParameterError(
            f"The 'format' parameter of {where} must be one of {list(FORMATS)}. Got {format!r} instead."
        )
    if not isinstance(text_field, str) or not text_field:
        raise InvalidParameterError(
            f"The 'text_field' parameter of {where} must be a non-empty string (a JSONL key "
            f"or CSV column). Got {text_field!r} instead."
        )


def _by_extension(file_name: str | None) -> str:
    suffix = (file_name or "").lower().rsplit(".", 1)[-1] if file_name and "." in file_name else ""
    return {"jsonl": "jsonl", "csv": "csv"}.get(suffix, "text")


def _decode(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidParameterError(
            f"The source given to {where} must be UTF-8. Got byte 0x{data[err.start]:02x} at "
            f"offset {err.start}, which is not valid UTF-8. Re-save the file as UTF-8."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _jsonl(text: str, field: str, where: str) -> list[str]:
    docs = []
    for n, record in jsonl_rows(text, where):
        value = record.get(field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise InvalidParameterError(
                f"Line {n} of the JSONL given to {where} must be an object with a string "
                f"{field!r} field. Got {str(record)[:80]!r} instead. Set text_field to the key "
                f"that holds the text."
            )
        docs.append(value)
    return docs


def _csv(text: str, field: str, where: str) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or field not in reader.fieldnames:
        raise InvalidParameterError(
            f"The CSV given to {where} must have a {field!r} column. Got columns "
            f"{reader.fieldnames!r} instead. Set text_field to the column that holds the text."
        )
    return [row.get(field) or "" for row in reader]
