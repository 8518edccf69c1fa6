"""The user's images: a folder with one subfolder per class (root/<class>/<image>).

Images are read with Pillow, converted to RGB, resized to image_size x image_size and scaled to
[0, 1]. Files that are not images (by extension) are skipped; images Pillow cannot read are skipped
and counted; the loader refuses when fewer than two classes keep readable images, and refuses an
image above max_pixels (width x height) from its header, before decoding it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from kdcore.data._user_common import (
    DEFAULT_MAX_BYTES,
    check_fractions,
    check_max_bytes,
    check_seed,
    classification_dataset,
    stratified_split,
    too_large,
)
from kdcore.data.base import SPLITS, Dataset, SplitData
from kdcore.validation import check_int_range

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_WHERE = "load_image_folder"
_LAYOUT = "root/<class>/<image>, for example photos/cat/001.png and photos/dog/002.jpg"
_MAX_LISTED = 10  # file names kept in the report per kind of problem
DEFAULT_MAX_PIXELS = 50_000_000  # width x height above which an image is refused before decoding (~8000x6000)


def load_image_folder(
    path: str | Path,
    *,
    image_size: int = 32,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    max_images: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Dataset:
    """A classification Dataset from a folder with one subfolder of images per class.

    path:          the root folder; class names are its subfolder names, sorted
    image_size:    images are resized to image_size x image_size (aspect ratio not kept)
    val_fraction, test_fraction: shares of the images held out, stratified by class, seeded by `seed`
    max_images:    read at most this many images, taken in turn from each class (None: all)
    max_bytes:     refuse when the image files to read add up to more than this
    max_pixels:    refuse, before decoding it, an image whose width x height is above this
                   (default DEFAULT_MAX_PIXELS, 50 million); Pillow's own decompression-bomb check
                   (Image.MAX_IMAGE_PIXELS) still refuses images above twice its limit
    name:          the Dataset's name (default: the folder's name)

    Splits hold inputs [N, 3, S, S] float in [0, 1] and targets [N] long class ids. The returned
    Dataset has a `load_report` dict: images read per class, files skipped as not images, unreadable
    files (with a few names and the first reason), empty class folders, files ignored at the root.
    """
    root = _check_folder(path)
    limits, vf, tf, seed = _check_options(
        image_size, val_fraction, test_fraction, seed, max_images, max_bytes, max_pixels
    )

    candidates, report = _list_candidates(root)
    images, labels, per_class = _read_images(candidates, limits, report)
    kept = _kept_classes(candidates, per_class, n_images=len(images), report=report)
    _check_classes_kept(root, kept, n_folders=len(candidates), report=report)

    splits = _split_images(images, labels, kept, vf, tf, seed)
    about = (
        f"{len(images)} images in {len(kept)} classes from the folder {root.name!r}, "
        f"resized to {limits.size}x{limits.size}."
    )
    ds = classification_dataset(name or root.name, splits, kept, description=about)
    ds.load_report = report
    return ds


def _check_options(
    image_size: Any, val_fraction: Any, test_fraction: Any, seed: Any, max_images: Any, max_bytes: Any, max_pixels: Any
) -> tuple[_Limits, float, float, int]:
    """The checked reading limits, val and test fractions and seed, in the order of load_image_folder's parameters."""
    size = check_int_range("image_size", image_size, 1, 1024, where=_WHERE)
    vf, tf = check_fractions(val_fraction, test_fraction, where=_WHERE)
    seed = check_seed(seed, where=_WHERE)
    if max_images is not None:
        max_images = check_int_range("max_images", max_images, 1, 10**9, where=_WHERE)
    max_bytes = check_max_bytes(max_bytes, where=_WHERE)
    max_pixels = check_int_range("max_pixels", max_pixels, 1, 2**40, where=_WHERE)
    return _Limits(size, max_images, max_bytes, max_pixels), vf, tf, seed


def _kept_classes(
    candidates: dict[str, list[Path]], per_class: dict[str, int], *, n_images: int, report: dict[str, Any]
) -> list[str]:
    """The sorted class names with at least one image read; records empty classes and counts in report."""
    kept = [c for c in sorted(candidates) if per_class.get(c, 0) > 0]
    report["empty_classes"] = [c for c in sorted(candidates) if per_class.get(c, 0) == 0]
    report["per_class"] = {c: per_class[c] for c in kept}
    report["images"] = n_images
    return kept


def _check_folder(path: str | Path) -> Path:
    """The root folder as a Path; refuses a file or a missing path."""
    root = Path(path)
    if not root.is_dir():
        what = "a file" if root.exists() else "nothing (no such folder)"
        raise ValueError(
            f"The 'path' parameter of {_WHERE} must be a folder laid out as {_LAYOUT}. "
            f"Got {str(root)!r}, which is {what}. Check the path."
        )
    return root


def _check_classes_kept(root: Path, kept: list[str], *, n_folders: int, report: dict[str, Any]) -> None:
    """Refuse when no image was readable, or when only one class kept images."""
    if not kept:
        raise ValueError(
            f"The 'path' parameter of {_WHERE} must be a folder laid out as {_LAYOUT}. "
            f"No readable image was found in {str(root)!r}: {n_folders} class folder(s), "
            f"{report['unreadable']} unreadable image(s), {report['skipped_not_image']} file(s) that "
            f"are not images (extensions read: {', '.join(sorted(IMAGE_SUFFIXES))}), "
            f"{report['ignored_root_files']} file(s) directly in the root folder (ignored). "
            f"Put image files in one subfolder per class."
        )
    if len(kept) < 2:
        raise ValueError(
            f"The 'path' parameter of {_WHERE} must hold at least 2 class subfolders with readable "
            f"images, laid out as {_LAYOUT}. Found 1 ({kept[0]!r}) in {str(root)!r}. "
            f"Add a subfolder of images for each class."
        )


def _split_images(
    images: list[np.ndarray], labels: list[str], kept: list[str], vf: float, tf: float, seed: int
) -> dict[str, SplitData]:
    """Stratified, seeded splits; class ids follow the sorted names of the classes that kept images."""
    remap = {c: i for i, c in enumerate(kept)}
    y = np.array([remap[c] for c in labels], dtype=np.int64)  # [N]
    x = torch.from_numpy(np.stack(images))  # [N, 3, S, S]
    parts = stratified_split(y, vf, tf, seed, class_names=kept, where=_WHERE)
    return {s: SplitData(x[torch.from_numpy(parts[s])], torch.from_numpy(y[parts[s]])) for s in SPLITS}


def _list_candidates(root: Path) -> tuple[dict[str, list[Path]], dict[str, Any]]:
    """Image files per class folder (sorted), and a report of what was left out."""
    report: dict[str, Any] = {
        "skipped_not_image": 0,
        "skipped_files": [],
        "unreadable": 0,
        "unreadable_files": [],
        "unreadable_reason": None,
        "ignored_root_files": 0,
        "stopped_at_max_images": False,
    }
    candidates: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            report["ignored_root_files"] += 1
            continue
        if not entry.is_dir():
            continue
        files = []
        for f in sorted(entry.rglob("*")):
            rel = f.relative_to(root)
            if not f.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
            else:
                report["skipped_not_image"] += 1
                if len(report["skipped_files"]) < _MAX_LISTED:
                    report["skipped_files"].append(str(rel))
        candidates[entry.name] = files
    return candidates, report


def _round_robin(candidates: dict[str, list[Path]]) -> Iterator[tuple[str, Path]]:
    """(class, file) pairs taking one file from each class in turn, so a cap keeps every class."""
    longest = max((len(v) for v in candidates.values()), default=0)
    for i in range(longest):
        for cls in sorted(candidates):
            if i < len(candidates[cls]):
                yield cls, candidates[cls][i]


@dataclass(frozen=True)
class _Limits:
    size: int  # images are resized to size x size
    max_images: int | None  # stop after this many images
    max_bytes: int  # refuse when the files read add up to more
    max_pixels: int  # refuse an image with more pixels, before decoding it


def _read_images(
    candidates: dict[str, list[Path]], limits: _Limits, report: dict[str, Any]
) -> tuple[list[np.ndarray], list[str], dict[str, int]]:
    images: list[np.ndarray] = []
    labels: list[str] = []
    per_class: dict[str, int] = {}
    total_bytes = 0
    for cls, f in _round_robin(candidates):
        if limits.max_images is not None and len(images) >= limits.max_images:
            report["stopped_at_max_images"] = True
            break
        total_bytes += f.stat().st_size
        if total_bytes > limits.max_bytes:
            raise too_large(
                "The size of the image files read so far",
                total_bytes,
                limits.max_bytes,
                where=_WHERE,
                fix="Pass max_images to read fewer images",
            )
        arr = _read_one(f, limits, report, shown=f"{cls}/{f.name}")
        if arr is None:
            continue
        images.append(arr)
        labels.append(cls)
        per_class[cls] = per_class.get(cls, 0) + 1
    return images, labels, per_class


def _too_many_pixels(shown: str, what: str, max_pixels: int) -> ValueError:
    return ValueError(
        f"The image {shown!r} is {what}, over the limit max_pixels={max_pixels:,} of {_WHERE}, "
        f"so it was not decoded (a picture this large can take gigabytes of memory). Shrink the "
        f"image or leave it out, or pass a larger max_pixels to {_WHERE} if this machine has "
        f"the memory for it."
    )


def _read_one(f: Path, limits: _Limits, report: dict[str, Any], *, shown: str) -> np.ndarray | None:
    """[3, S, S] float32 in [0, 1], or None (counted in the report) when Pillow cannot read it.

    Raises ValueError for an image above limits.max_pixels: Image.open reads only the header, so the
    size is checked before any pixel is decoded."""
    try:
        with warnings.catch_warnings():  # max_pixels below is the limit: no bomb warning on the way
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f)
    except Image.DecompressionBombError as err:  # above twice Pillow's own limit: refused by Image.open
        raise _too_many_pixels(shown, f"too large for Pillow ({err})", limits.max_pixels) from None
    except Exception as err:  # noqa: BLE001 — Pillow raises OSError, ValueError, SyntaxError, EOFError ...
        _unreadable(report, shown, err)
        return None
    with im:
        width, height = im.size
        if width * height > limits.max_pixels:
            raise _too_many_pixels(shown, f"{width}x{height} = {width * height:,} pixels", limits.max_pixels)
        try:
            im.draft("RGB", (limits.size, limits.size))  # JPEG: decode at a reduced scale when possible
            rgb = im.convert("RGB").resize((limits.size, limits.size), Image.Resampling.BILINEAR)
        except Exception as err:  # noqa: BLE001 — truncated or corrupt pixel data
            _unreadable(report, shown, err)
            return None
    return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0  # [H, W, 3] -> [3, S, S]


def _unreadable(report: dict[str, Any], shown: str, err: BaseException) -> None:
    """Count an image Pillow could not read in the report (a few names and the first reason)."""
    report["unreadable"] += 1
    if len(report["unreadable_files"]) < _MAX_LISTED:
        report["unreadable_files"].append(shown)
    if report["unreadable_reason"] is None:
        report["unreadable_reason"] = f"{shown}: {type(err).__name__}: {err}"
