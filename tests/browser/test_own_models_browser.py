"""A user's own Hugging Face pair in the running app: the sidebar names the teacher and student directories
and a text file on this machine (no upload), the text is tokenised by the pair's own tokenizer, and the
Soft labels and Divergence pages draw their charts for it. Screenshots go to tests/_screenshots.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.test_app_browser import LONG, _no_errors, _plots, _settle, _shot, _wait_plots
from tests.helpers.hf_pairs import llama_pair

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    """(teacher_dir, student_dir, text file): the tiny tied-embedding Llama pair and a few paragraphs."""
    root = tmp_path_factory.mktemp("own_hf")
    teacher, student = llama_pair(root)
    text = root / "corpus.txt"
    text.write_text("\n\n".join(f"The fox number {i} jumps over the lazy dog at {i * 7} o'clock." for i in range(80)))
    return teacher, student, text


def _fill(sidebar, label: str, value: str) -> None:
    box = sidebar.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Tab")


def _choose(page, sidebar, label: str, option: str) -> None:
    sidebar.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True)).click()
    page.get_by_role("option", name=re.compile(re.escape(option))).click()


def test_own_hf_pair_by_path_soft_labels_and_divergences(app_url, page, screenshots, own_files):
    teacher, student, text = own_files
    page.goto(app_url, timeout=LONG)
    _settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Your own models", exact=True).click()
    _settle(page)
    _choose(page, sidebar, "Kind", "causal_lm")
    _fill(sidebar, "Teacher directory", str(teacher))
    _fill(sidebar, "Student directory", str(student))
    _choose(page, sidebar, "Data", "Text (.txt, .jsonl, .csv)")
    _fill(sidebar, "Data file or folder on this machine", str(text))
    _fill(sidebar, "Context length", "32")
    sidebar.get_by_role("button", name="Load pair").click()
    _settle(page)
    sidebar.get_by_text(re.compile(r"your pair · causal_lm")).wait_for(timeout=LONG)
    _no_errors(page)
    for link, charts, shot in (
        ("Soft labels", 2, "own_hf_soft_labels"),
        ("Divergence components", 1, "own_hf_divergences"),
    ):
        sidebar.get_by_role("link", name=re.compile(re.escape(link))).click()
        _settle(page)
        _wait_plots(page, charts)
        _no_errors(page)
        assert _plots(page) >= charts
        assert "vocabulary size of" not in page.inner_text('[data-testid="stMain"]')
        _shot(page, screenshots / f"{shot}.png")
