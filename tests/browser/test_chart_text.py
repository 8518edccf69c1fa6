"""Readable charts: on every page and every sample pair, no text of a plotly chart (title, axis titles,
tick labels, legend entries, colour-bar titles and ticks, annotations) overlaps another or leaves its chart.

One browser session walks the pages through the sidebar, pair after pair (the `app_url` server, one
page object), so the whole check costs one model load per pair. Closed expanders are opened first, so
their charts are drawn and checked too. Two short finished runs are put in the app's store beforehand,
so the Distill page draws the last run's curves, and, with both selected, their comparison.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.test_app_browser import LONG, _no_errors, _settle
from tests.helpers.runs import digits_run

pytestmark = pytest.mark.browser

PAIRS = {
    "digits": "digits",
    "shapes": "images with masks",
    "shapes_multilabel": "multi-label",
    "tinylang": "tinylang",
}  # pair -> words of its sidebar option
PAGES = (
    "Overview",
    "Soft labels",
    "Features",
    "Attention",
    "Class activation maps",
    "Divergence components",
    "Calibration",
    "Distill",
    "Doctor",
)
TOLERANCE_PX = 2.0
_BOXES_JS = (Path(__file__).parent / "text_boxes.js").read_text()
_CHARTS_DRAWN_JS = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .filter(c => c.getBoundingClientRect().width > 0)
    .every(c => c.querySelector('.js-plotly-plot .main-svg'))"""


@pytest.fixture(scope="module")
def finished_runs(app_home):
    """Two-epoch KD and plain-label runs of the digits pair in the app's store (a few seconds of CPU)."""
    from kdcore.jobs import RunStore

    two_epochs = dict(epochs=2, train_size=64, val_size=64, probe_size=32, checkpoints=2)  # 32 a batch
    return [digits_run(RunStore(app_home), objective=o, **two_epochs).run_id for o in ("ce", "kd")]


def _open_expanders(page) -> None:
    page.evaluate("""() => document.querySelectorAll('[data-testid="stExpander"] details:not([open]) summary')
                         .forEach(s => s.click())""")


_IDLE_JS = """() => !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stSpinner"]') && !document.querySelector('[data-stale="true"]')"""


def _idle(page) -> None:
    """Wait until the script run is over and no element is left stale from the previous run."""
    page.wait_for_timeout(300)  # the rerun has started
    page.wait_for_function(_IDLE_JS, timeout=LONG)
    _settle(page)


def choose_pair(page, pair: str) -> None:
    """Choose a sample pair in the sidebar and wait until the sidebar names it."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile(re.escape(PAIRS[pair]))).click()
    sidebar.locator('[data-testid="stCaptionContainer"]', has_text=f"{pair} ·").first.wait_for(timeout=LONG)
    _idle(page)


def open_page(page, name: str) -> None:
    """Open a page from the sidebar and wait until it has rendered (its URL, then no run in progress)."""
    link = page.locator('[data-testid="stSidebar"]').get_by_role("link", name=re.compile(re.escape(name)))
    href = link.get_attribute("href")
    link.click()
    page.wait_for_url(re.compile(re.escape(href.rstrip("/")) + "/?$"), timeout=LONG)
    _idle(page)


def _check_page(page, where: str) -> list[str]:
    _open_expanders(page)
    _idle(page)
    page.wait_for_function(_CHARTS_DRAWN_JS, timeout=LONG)
    page.wait_for_timeout(500)  # plotly's second layout pass (automargin)
    _no_errors(page)
    found = []
    for chart in page.evaluate(_BOXES_JS, TOLERANCE_PX):
        found += [f"{where} · {chart['title']}: {p}" for p in chart["problems"]]
    return found


def _compare_runs(page) -> list[str]:
    """The Distill page's Runs & reports tab with both runs selected: the comparison and the run's figures."""
    open_page(page, "Distill")
    page.get_by_role("tab", name="Runs & reports").click()
    _idle(page)
    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    for row in range(2):  # the row-selection cells of the grid's canvas
        page.mouse.click(grid["x"] + 15, grid["y"] + 35 * (row + 1) + 17)
        _idle(page)
    page.get_by_text("by epoch, runs compared").first.wait_for(timeout=LONG)
    return _check_page(page, "runs compared")


def test_no_chart_text_overlaps_or_leaves_its_chart(app_url, page, finished_runs):
    page.goto(app_url, timeout=LONG)
    _settle(page)
    problems, checked = [], 0
    for pair in PAIRS:
        choose_pair(page, pair)
        for name in PAGES:
            open_page(page, name)
            if name == "Distill":  # the last run's curves
                page.get_by_role("tab", name="Live").click()
            problems += _check_page(page, f"{pair} / {name}")
            checked += page.locator(".js-plotly-plot").count()
    problems += _compare_runs(page)
    checked += page.locator(".js-plotly-plot").count()
    assert checked >= 45, f"only {checked} charts were drawn: the walk did not reach the pages"
    assert not problems, "\n".join(problems)
