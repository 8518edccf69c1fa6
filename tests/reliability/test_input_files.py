"""The user's files: pickled weights, oversized images and lying zips are refused in plain words.

Cases of issue 15: a pickle payload got "may be corrupt" rather than "refused: needs full
unpickling; convert to safetensors like this"; a 10000x10000 PNG was decoded in full; a zip whose
sizes lie left a `.part` folder and a raw BadZipFile.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torch import nn

from kdcore.data import load_image_folder
from kdcore.data.archive import extract_zip
from kdcore.data.image_folder import DEFAULT_MAX_PIXELS
from kdcore.weights import load_state_dict

# ---- pickled weights ---------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would call os.system: the loader must refuse it without running it."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _refusal(path: Path) -> str:
    with pytest.raises(ValueError) as e:
        load_state_dict(path)
    msg = str(e.value)
    assert msg.startswith(f"Refused to load {str(path)!r}: it is a pickle that needs full unpickling")
    assert "Convert it to safetensors like this" in msg and "may be corrupt" not in msg
    return msg


@pytest.mark.parametrize(
    "name, write",
    [
        ("raw.pt", lambda p: p.write_bytes(pickle.dumps(_Payload(), protocol=2))),
        ("raw4.bin", lambda p: p.write_bytes(pickle.dumps(_Payload(), protocol=4))),
        ("zipped.pt", lambda p: torch.save({"w": torch.zeros(2), "x": _Payload()}, p)),
        ("legacy.pth", lambda p: torch.save({"x": _Payload()}, p, _use_new_zipfile_serialization=False)),
    ],
)
def test_a_pickle_payload_is_refused_with_the_conversion_recipe(tmp_path, name, write):
    path = tmp_path / name
    write(path)
    msg = _refusal(path)
    assert re.search(r"it refers to (posix|nt|os)\.system", msg), msg  # the global it would have called
    assert f"torch.load({str(path)!r}, map_location='cpu', weights_only=False)" in msg


def test_a_pickled_module_names_its_class(tmp_path):
    torch.save(_net(), tmp_path / "model.pt")
    assert "it refers to torch.nn.modules.container.Sequential" in _refusal(tmp_path / "model.pt")


def _recipe(msg: str) -> str:
    """The Python lines of the refusal's recipe (indented by four spaces), dedented."""
    lines = [line for line in msg.splitlines() if line.startswith("    ")]
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize(
    "payload",
    [
        lambda net: net,  # a whole pickled module
        lambda net: {"state_dict": net.state_dict(), "epoch": 3, "stats": np.zeros(2)},  # a checkpoint
        lambda net: {"model": net, "optimizer": None},
    ],
)
def test_the_recipe_converts_a_trusted_file_that_then_loads(tmp_path, payload):
    net = _net()
    src = tmp_path / "trusted.pt"
    torch.save(payload(net), src)  # made by this test: trusted, so the recipe may unpickle it
    code = _recipe(_refusal(src))
    exec(compile(code, "recipe", "exec"), {})  # noqa: S102 — runs the message's own lines
    out = load_state_dict(tmp_path / "trusted.safetensors")
    assert out.keys() == net.state_dict().keys()
    assert all(torch.equal(out[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("data", [b"hello, not a pickle" * 5, b"\x80\x02}q\x00(X\x01\x00\x00\x00wq"])
def test_a_corrupt_or_truncated_file_is_called_corrupt_not_a_pickle_to_convert(tmp_path, data):
    (tmp_path / "w.pt").write_bytes(data)
    with pytest.raises(ValueError) as e:
        load_state_dict(tmp_path / "w.pt")
    assert "may be corrupt, truncated or in another format" in str(e.value)
    assert "Refused" not in str(e.value)


# ---- images above the pixel limit --------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png(path: Path, width: int, height: int) -> Path:
    """A black 1-bit PNG of width x height, written row by row: kilobytes on disk, never held decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return path


def _small_folder(root: Path, side: int = 8) -> Path:
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (side, side), (c * 200, i * 40, 0)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def decoded(monkeypatch):
    """The file names whose pixels Pillow decoded."""
    names: list[str] = []
    real = ImageFile.ImageFile.load

    def spy(self):
        names.append(Path(getattr(self, "filename", "") or "").name)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return names


def test_a_10000_by_10000_png_is_refused_before_decoding(tmp_path, decoded):
    root = _small_folder(tmp_path / "pets")
    big = _huge_png(root / "dog" / "huge.png", 10_000, 10_000)
    assert big.stat().st_size < 100_000
    with pytest.raises(ValueError) as e:
        load_image_folder(root, image_size=8)
    msg = str(e.value)
    assert "'dog/huge.png' is 10000x10000 = 100,000,000 pixels" in msg
    assert f"max_pixels={DEFAULT_MAX_PIXELS:,}" in msg and "not decoded" in msg and "pass a larger max_pixels" in msg
    assert "huge.png" not in decoded and decoded, "the small images are decoded, the huge one never"


def test_the_pixel_limit_is_a_parameter(tmp_path):
    root = _small_folder(tmp_path / "pets", side=20)  # 400 pixels each
    assert load_image_folder(root, image_size=4, max_pixels=400).load_report["images"] == 8
    with pytest.raises(ValueError, match=r"20x20 = 400 pixels, over the limit max_pixels=399"):
        load_image_folder(root, image_size=4, max_pixels=399)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image_folder(root, max_pixels=0)


def test_above_pillows_own_bomb_limit_is_refused_in_the_same_words(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow raises above twice this, in Image.open
    root = _small_folder(tmp_path / "pets", side=16)  # 256 pixels
    with pytest.raises(ValueError, match=r"too large for Pillow .*max_pixels="):
        load_image_folder(root, image_size=4)


# ---- zips that lie, and cleaning up ------------------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _declare_size(data: bytes, entry: int, size: int) -> bytes:
    """The zip with entry number `entry`'s uncompressed size set to `size` in both its headers."""
    out = bytearray(data)
    local = [m.start() for m in re.finditer(b"PK\x03\x04", out)][entry]
    central = [m.start() for m in re.finditer(b"PK\x01\x02", out)][entry]
    struct.pack_into("<I", out, local + 22, size)
    struct.pack_into("<I", out, central + 24, size)
    return bytes(out)


def _png_bytes(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 6), color).save(buf, format="PNG")
    return buf.getvalue()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "data.zip")


def _refused(tmp_path: Path, data: bytes, **kw) -> str:
    src = tmp_path / "data.zip"
    src.write_bytes(data)
    with pytest.raises(ValueError) as e:
        extract_zip(src, **kw)
    assert _leftovers(tmp_path) == [], "no .part folder and no half-extracted folder may be left"
    return str(e.value)


def test_a_zip_declaring_less_than_it_holds_is_refused_and_cleaned_up(tmp_path):
    data = _declare_size(_zip({"cat/a.png": b"\0" * 1_000_000, "dog/b.png": b"1" * 100}), 0, 10)
    msg = _refused(tmp_path, data)
    assert "The zip 'data.zip' is corrupt: its entry 'cat/a.png' could not be extracted" in msg
    assert "BadZipFile: Bad CRC-32" in msg and "Create the zip again" in msg


def test_a_zip_declaring_more_than_it_holds_is_refused(tmp_path):
    data = _declare_size(_zip({"dog/b.png": b"1" * 100, "cat/a.png": b"\0" * 5000}), 1, 90_000)
    msg = _refused(tmp_path, data)
    assert "'cat/a.png'" in msg and "it declares 90,000 bytes but holds 5,000" in msg


def test_limits_are_checked_before_writing(tmp_path):
    msg = _refused(tmp_path, _zip({"a/1.png": b"\0" * 3000, "b/1.png": b"\0" * 3000}), max_bytes=5000)
    assert "expands to: 6,000 bytes" in msg and "max_bytes=5,000" in msg
    msg = _refused(tmp_path, _zip({f"a/{i}.png": b"x" for i in range(5)}), max_files=4)
    assert "holds 5 files, over the limit max_files=4" in msg


@pytest.mark.parametrize("data", [b"PK\x03\x04 not really a zip" * 3, b"", b"plain text"])
def test_a_file_that_is_not_a_zip_gets_a_clear_error(tmp_path, data):
    msg = _refused(tmp_path, data)
    assert "'data.zip' is not a readable zip archive" in msg and "BadZipFile" in msg


def test_a_truncated_zip_gets_a_clear_error(tmp_path):
    whole = _zip({"cat/a.png": os.urandom(4000), "dog/b.png": os.urandom(4000)})
    msg = _refused(tmp_path, whole[: len(whole) // 2])
    assert "not a readable zip archive" in msg


def test_a_file_and_a_folder_of_the_same_name_are_refused(tmp_path):
    msg = _refused(tmp_path, _zip({"cat": b"a file", "cat/a.png": b"x"}))
    assert "Could not write the zip's entry 'cat/a.png'" in msg and "same name" in msg


def test_an_interrupt_mid_extraction_leaves_nothing(tmp_path, monkeypatch):
    real = zipfile.ZipExtFile.read
    calls = []

    def read(self, n=-1):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, n)

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    src = tmp_path / "data.zip"
    src.write_bytes(_zip({"cat/a.png": b"a" * 10, "dog/b.png": b"b" * 10}))
    with pytest.raises(KeyboardInterrupt):
        extract_zip(src)
    assert _leftovers(tmp_path) == []


def test_unsafe_paths_are_skipped_and_nothing_lands_outside(tmp_path):
    work = tmp_path / "uploads"
    work.mkdir()
    src = work / "data.zip"
    src.write_bytes(
        _zip(
            {
                "../escape.txt": b"x",
                "/abs.txt": b"x",
                "__MACOSX/cat/._a.png": b"x",
                "cat/a.png": b"x",
                "dog/b.png": b"y",
            }
        )
    )
    out = extract_zip(src)
    assert out == work / "data"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["cat", "cat/a.png", "dog", "dog/b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uploads"]
    assert _leftovers(work) == ["data"]


def test_a_good_zip_of_one_top_folder_becomes_an_image_dataset(tmp_path):
    entries = {
        f"photos/{cls}/{i}.png": _png_bytes((c * 200, i * 40, 0))
        for c, cls in enumerate(("cat", "dog"))
        for i in range(4)
    }
    src = tmp_path / "data.zip"
    src.write_bytes(_zip(entries))
    out = extract_zip(src)
    assert sorted(p.name for p in out.iterdir()) == ["cat", "dog"]  # the top folder unwrapped
    assert extract_zip(src) == out  # extracted once, then reused
    assert load_image_folder(out, image_size=4).class_names == ["cat", "dog"]
    assert _leftovers(tmp_path) == ["data"]


def test_the_app_unzips_uploads_the_same_way(tmp_path):
    from app import state
    from kdcore.data.sources import DataSource, load_data_source

    src = tmp_path / "3f2a.zip"
    src.write_bytes(_declare_size(_zip({"cat/a.png": b"\0" * 100_000}), 0, 7))
    with pytest.raises(ValueError, match="is corrupt"):  # the images source the sidebar builds for an upload
        load_data_source(DataSource("images", str(src), unzip_max_bytes=state.UNZIP_LIMIT))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3f2a.zip"]
