"""A user's own Hugging Face pair in the running app: the sidebar names the teacher and student directories
and a text file on this machine (no upload), the text is tokenised by the pair's own tokenizer, and the
Soft labels and Divergence pages draw their charts for it; a from_teacher run of the pair is started on
the Distill page, trained by the background worker, and its student reopened in the sidebar.
Screenshots go to tests/_screenshots.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.test_app_browser import LONG, _no_errors, _plots, _settle, _shot, _wait_plots
from tests.helpers.hf_pairs import llama_pair

pytestmark = pytest.mark.browser
TEXT = "\n\n".join(f"The fox number {i} jumps over the lazy dog at {i * 7} o'clock." for i in range(80))


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    """(teacher_dir, student_dir, text file): the tiny tied-embedding Llama pair and a few paragraphs."""
    root = tmp_path_factory.mktemp("own_hf")
    teacher, student = llama_pair(root)
    text = root / "corpus.txt"
    text.write_text(TEXT, encoding="utf-8")
    return teacher, student, text


def _fill(scope, label: str, value: str) -> None:
    box = scope.get_by_label(label, exact=True).first  # (the Distill page repeats some labels in its tabs)
    box.fill(value)
    box.press("Tab")


def _choose(page, scope, label: str, option: str) -> None:
    scope.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True)).click()
    page.get_by_role("option", name=re.compile(re.escape(option))).click()


def _load_own_pair(app_url, page, files, *, kind: str = "causal_lm", context: int = 32) -> None:
    """Name the pair's directories and text file in the sidebar's form, and load it."""
    teacher, student, text = files
    page.goto(app_url, timeout=LONG)
    _settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Your own models", exact=True).click()
    _settle(page)
    _choose(page, sidebar, "Kind", kind)
    _fill(sidebar, "Teacher directory", str(teacher))
    _fill(sidebar, "Student directory", str(student))
    _choose(page, sidebar, "Data", "Text (.txt, .jsonl, .csv)")
    _fill(sidebar, "Data file or folder on this machine", str(text))
    _fill(sidebar, "Context length", str(context))
    sidebar.get_by_role("button", name="Load pair").click()
    _settle(page)
    sidebar.get_by_text(re.compile(rf"your pair · {kind}")).wait_for(timeout=LONG)
    _no_errors(page)


def _open(page, link: str, charts: int, shot) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile(re.escape(link))).click()
    _settle(page)
    _wait_plots(page, charts)
    _no_errors(page)
    assert _plots(page) >= charts
    assert "vocabulary size of" not in page.inner_text('[data-testid="stMain"]')
    _shot(page, shot)


def _distill_from_teacher(page, method: str | None = None) -> None:
    """On the Distill page: a from_teacher run of the loaded own pair, 2 steps on 16 samples, started and
    followed in the Live tab until the background worker (a separate process that loads the pair from
    the run's config) completes it. ``method``: the form's method that must be preselected."""
    sidebar, main = page.locator('[data-testid="stSidebar"]'), page.locator('[data-testid="stMain"]')
    sidebar.get_by_role("link", name=re.compile("Distill")).click()
    _settle(page)
    if method is not None:
        main.get_by_text(re.compile(re.escape(method))).first.wait_for(timeout=LONG)
    main.get_by_text("a copy of some of the teacher's layers (from_teacher)").click()
    _settle(page)
    _fill(main, "Stop after steps (0 = all)", "2")
    _fill(main, "Training samples (0 = all)", "16")
    main.get_by_role("button", name="Start distillation").click()
    page.get_by_text("queued: follow it in the").wait_for(timeout=LONG)
    _no_errors(page)
    page.get_by_role("tab", name="Live").click()
    page.wait_for_function(
        "() => /completed/.test(document.querySelector('[data-testid=\"stProgress\"]')?.textContent || '')",
        timeout=LONG,
    )


def test_own_hf_pair_by_path_soft_labels_and_divergences(app_url, page, screenshots, own_files):
    _load_own_pair(app_url, page, own_files)
    _open(page, "Soft labels", 2, screenshots / "own_hf_soft_labels.png")
    _open(page, "Divergence components", 1, screenshots / "own_hf_divergences.png")


@pytest.mark.slow
def test_own_hf_pair_distilled_from_the_app_and_its_student_reopened(app_url, page, screenshots, own_files):
    _load_own_pair(app_url, page, own_files)
    sidebar = page.locator('[data-testid="stSidebar"]')
    _distill_from_teacher(page)
    _shot(page, screenshots / "own_hf_distill_live.png")
    sidebar.get_by_text("Student of a finished run", exact=True).click()
    _settle(page)
    _choose(page, sidebar, "Run", "hf:llama_teacher→llama_teacher[2 layers]")
    _settle(page)
    sidebar.get_by_text(re.compile(r"llama_teacher\[2 layers\] · run .* · causal_lm")).wait_for(timeout=LONG)
    _open(page, "Soft labels", 2, screenshots / "own_hf_run_soft_labels.png")


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    """(teacher_dir, student_dir, sentences): the tiny BERT-style encoder pair (4 → 2 layers) and short sentences."""
    from tests.helpers.hf_pairs import bert_encoder_pair

    root = tmp_path_factory.mktemp("own_encoder")
    teacher, student = bert_encoder_pair(root)
    words = ["red", "blue", "fox", "stone", "river", "cloud", "seven", "green"]
    lines = [" ".join(words[(i * k) % len(words)] for k in range(1, 5)) + f" {i}" for i in range(60)]
    text = root / "sentences.txt"
    text.write_text("\n".join(lines), encoding="utf-8")
    return teacher, student, text


@pytest.mark.slow
def test_own_encoder_pair_probed_and_distilled_from_the_app(app_url, page, screenshots, encoder_files):
    """The encoder pair named in the sidebar, compared on the Features page (CKA), then distilled from the
    Distill page (embed_distill, from_teacher) by the background worker to completion."""
    _load_own_pair(app_url, page, encoder_files, kind="encoder", context=16)
    _open(page, "Features", 1, screenshots / "own_encoder_features.png")
    _distill_from_teacher(page, method="embed_distill")  # an encoder pair's default method
    _no_errors(page)
    _shot(page, screenshots / "own_encoder_distill_live.png")
