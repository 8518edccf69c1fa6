"""The path checks the adapters share (kdcore.adapters.hf_files): local_path and check_new_dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdcore.adapters.hf_files import check_new_dir, local_path
from kdcore.validation import InvalidParameterError


def test_local_path_expands_home_and_refuses_other_types() -> None:
    assert local_path("~/x", name="p", where="w", what="a file") == Path.home() / "x"
    assert local_path(Path("rel/y"), name="p", where="w", what="a file") == Path("rel/y")
    with pytest.raises(
        InvalidParameterError, match=r"The 'p' parameter of w must be a \.gguf path \(str or Path\)\. Got int"
    ):
        local_path(3, name="p", where="w", what="a .gguf path")


def test_check_new_dir_takes_a_new_or_empty_directory(tmp_path: Path) -> None:
    assert check_new_dir(tmp_path / "new", name="out", where="w") == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # only checked, never made
    (tmp_path / "empty").mkdir()
    assert check_new_dir(str(tmp_path / "empty"), name="out", where="w") == tmp_path / "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    with pytest.raises(
        InvalidParameterError, match="'out' parameter of w must be a new or empty directory.*is not empty"
    ):
        check_new_dir(tmp_path / "full", name="out", where="w")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InvalidParameterError, match="is a file"):
        check_new_dir(tmp_path / "f.txt", name="out", where="w")
    with pytest.raises(InvalidParameterError, match="must be a directory path"):
        check_new_dir(None, name="out", where="w")
