"""Extracting a zip of the user's files: bounded, inside its own folder, and all or nothing.

Entries are written to a private `.<name>.<random>.part` folder next to the destination and renamed
to it only when every entry is written; on any failure (a corrupt zip, sizes that lie, a limit,
a full disk) that folder is removed and a ValueError says what went wrong and what to do.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from kdcore.data._user_common import too_large
from kdcore.validation import check_int_range

DEFAULT_MAX_UNZIPPED = 200 * 2**20  # 200 MB: the most a zip may expand to unless max_bytes says otherwise
DEFAULT_MAX_FILES = 20_000  # the most files a zip may hold unless max_files says otherwise
_CHUNK = 1 << 20  # bytes decompressed per read
_WHERE = "extract_zip"


class _Refused(ValueError):
    """A refusal already worded for the user: passed on unchanged."""


def extract_zip(
    path: str | Path,
    dest: str | Path | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_UNZIPPED,
    max_files: int = DEFAULT_MAX_FILES,
    unwrap_single_folder: bool = True,
) -> Path:
    """Extract the zip at `path` into the folder `dest` and return that folder.

    dest:       default: the zip's path without its suffix; an existing folder is returned as is
    max_bytes:  refuse a zip whose entries declare more than this in all, and stop (refusing) as
                soon as the bytes actually decompressed pass it, whatever the zip declares
    max_files:  refuse a zip with more files than this
    unwrap_single_folder: a zip holding one top folder that holds folders is extracted without
                that top level (photos.zip/photos/cat/1.png -> dest/cat/1.png)

    Entries with absolute paths, `..` parts or under `__MACOSX/` are skipped: nothing is written
    outside `dest`. Raises ValueError (and leaves nothing behind) for a file that is not a zip, a
    corrupt entry (bad CRC, truncated data, a size that does not match the data), a limit passed,
    or a file-system error.
    """
    src = Path(path)
    out = Path(dest) if dest is not None else src.with_suffix("")
    max_bytes = check_int_range("max_bytes", max_bytes, 1, 1 << 40, where=_WHERE)
    max_files = check_int_range("max_files", max_files, 1, 10**9, where=_WHERE)
    if out.is_dir():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    except OSError as e:
        raise ValueError(
            f"Could not create a folder in {str(out.parent)!r} to extract {src.name!r} into "
            f"({type(e).__name__}: {e}). Check that the folder is writable."
        ) from None
    try:
        _extract_into(src, tmp, max_bytes, max_files)
        return _publish(tmp, out, unwrap_single_folder)
    except BaseException:  # every failure, Ctrl-C included, leaves no .part folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _extract_into(src: Path, tmp: Path, max_bytes: int, max_files: int) -> None:
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise _Refused(
            f"The file {src.name!r} is not a readable zip archive ({type(e).__name__}: {e}). "
            f"Create the zip again (for example with `zip -r data.zip data/`) and upload it."
        ) from None
    with zf:
        entries = _safe_entries(zf)
        _check_declared(src, entries, max_bytes, max_files)
        written = 0
        for info, parts in entries:
            written += _write_entry(zf, info, tmp.joinpath(*parts), src, max_bytes - written)


def _safe_entries(zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The zip's files with their path parts, less those that would land outside the folder."""
    kept = []
    for info in zf.infolist():
        rel = PurePosixPath(info.filename)
        if info.is_dir() or not rel.parts or rel.is_absolute() or ".." in rel.parts or rel.parts[0] == "__MACOSX":
            continue
        kept.append((info, rel.parts))
    return kept


def _check_declared(src: Path, entries: list, max_bytes: int, max_files: int) -> None:
    if len(entries) > max_files:
        raise _Refused(
            f"The zip {src.name!r} holds {len(entries):,} files, over the limit max_files={max_files:,} "
            f"of {_WHERE}. Zip fewer files."
        )
    declared = sum(info.file_size for info, _ in entries)
    if declared > max_bytes:
        raise _Refused(
            str(
                too_large(
                    f"The zip {src.name!r} expands to",
                    declared,
                    max_bytes,
                    where=_WHERE,
                    fix="Zip fewer or smaller files",
                )
            )
        )


def _write_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, src: Path, budget: int) -> int:
    """Copy one entry to dest; return the bytes written. Refuses past `budget` bytes."""
    written = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _guarded(src, info, zf.open, info) as entry, open(dest, "wb") as f:
            while chunk := _guarded(src, info, entry.read, _CHUNK):
                written += len(chunk)
                if written > budget:
                    raise _Refused(
                        f"The zip {src.name!r} holds more data than its entries declare (its entry "
                        f"{info.filename!r} passed the limit while being extracted). The zip is corrupt "
                        f"or crafted; create it again."
                    )
                f.write(chunk)
    except OSError as e:  # the file system: a full disk, or a file and a folder with the same name
        raise _Refused(
            f"Could not write the zip's entry {info.filename!r} into {str(dest.parent)!r} "
            f"({type(e).__name__}: {e}). Check the free disk space, and that the zip does not "
            f"hold a file and a folder of the same name."
        ) from None
    if written != info.file_size:
        raise _Refused(_corrupt(src, info, f"it declares {info.file_size:,} bytes but holds {written:,}"))
    return written


def _guarded(src: Path, info: zipfile.ZipInfo, call: Any, arg: Any) -> Any:
    """call(arg), with zipfile's errors (bad CRC, truncated data, encryption ...) as a _Refused."""
    try:
        return call(arg)
    except Exception as e:  # noqa: BLE001 — BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError ...
        raise _Refused(_corrupt(src, info, f"{type(e).__name__}: {e}")) from None


def _corrupt(src: Path, info: zipfile.ZipInfo, why: str) -> str:
    return (
        f"The zip {src.name!r} is corrupt: its entry {info.filename!r} could not be extracted ({why}). "
        f"Its sizes or data do not match what its header says. Create the zip again and upload it."
    )


def _publish(tmp: Path, out: Path, unwrap: bool) -> Path:
    """Rename the finished folder to `out` (another process may have got there first: keep theirs)."""
    entries = list(tmp.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else None
    source = top if unwrap and top is not None and any(q.is_dir() for q in top.iterdir()) else tmp
    try:
        source.rename(out)
    except OSError as e:
        if not out.is_dir():
            raise _Refused(
                f"Could not move the extracted files to {str(out)!r} ({type(e).__name__}: {e}). "
                f"Check that the folder is writable."
            ) from None
    shutil.rmtree(tmp, ignore_errors=True)
    return out
