"""app.perf.warm_renders: the page timings bench/app.py reports (one page, one pair, one warm repeat)."""

from pathlib import Path

import pytest

from app.perf import warm_renders

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def test_warm_renders_times_each_page_of_each_pair(monkeypatch, tmp_path):
    monkeypatch.setenv("KDWB_HOME", str(tmp_path / "kdwb"))  # warm_renders points it at a temp dir; restored after
    rows = warm_renders(MAIN, ["calibration"], ["digits"], repeats=1)
    assert [r[:2] for r in rows] == [("digits", "calibration")]
    first, warm = rows[0][2:]
    assert first > 0 and warm > 0


def test_a_page_that_raises_is_named_with_its_pair(monkeypatch, tmp_path):
    monkeypatch.setenv("KDWB_HOME", str(tmp_path / "kdwb"))
    (tmp_path / "views").mkdir()
    (tmp_path / "main.py").write_text(
        "import streamlit as st\nst.navigation([st.Page('views/home.py'), st.Page('views/broken.py')]).run()\n"
    )
    (tmp_path / "views" / "home.py").write_text("import streamlit as st\nst.write('home')\n")
    (tmp_path / "views" / "broken.py").write_text("raise ValueError('boom')\n")
    with pytest.raises(RuntimeError, match="^digits/broken: "):  # streamlit may redact the message
        warm_renders(str(tmp_path / "main.py"), ["broken"], ["digits"], repeats=1)
