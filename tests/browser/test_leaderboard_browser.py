"""The Leaderboard page in Debian's chromium: a leaderboard kept in the app's run store opens at once with
its table and its bar chart (bars, error bars, gain labels), no chart text overlapping; a screenshot."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_app_browser import LONG, _no_errors, _settle, _shot, _wait_plots
from tests.browser.test_chart_text import _check_page

pytestmark = pytest.mark.browser

METHODS = ["kd", "dkd", "cakd"]


@pytest.fixture(scope="module")
def stored_board(app_home):
    """A tiny leaderboard on digits (ce and 3 methods × 2 seeds, 2 epochs on 64 samples) in the app's store."""
    from kdcore.jobs import RunStore
    from kdcore.jobs.leaderboard import compare_methods

    budget = {"epochs": 2, "train_size": 64, "batch_size": 32}
    res = compare_methods("digits", METHODS, [0, 1], base=budget, store=RunStore(app_home))
    assert (res.runs["state"] == "completed").all()
    return res


def test_leaderboard_page_draws_the_stored_leaderboard(app_url, page, screenshots, stored_board):
    page.goto(f"{app_url}/leaderboard", timeout=LONG)
    page.get_by_role("heading", name=re.compile("Leaderboard")).first.wait_for(timeout=LONG)
    _settle(page)
    _wait_plots(page, 1)
    _no_errors(page)
    chart = page.locator(".js-plotly-plot").first
    assert "Method leaderboard on digits" in chart.locator(".gtitle").text_content()
    assert chart.locator(".bars .point").count() == 2 * (len(METHODS) + 1)  # best and final epoch per method
    assert chart.locator(".errorbar").count() >= 2 * (len(METHODS) + 1)
    labels = chart.locator(".annotation-text").all_text_contents()
    assert len(labels) == len(METHODS) and all(t.endswith("pts") for t in labels)
    grid = page.locator('[data-testid="stDataFrame"]')
    assert grid.count() == 1
    assert page.get_by_text("4 of 4").count() == 0 and page.get_by_text("8 of 8 runs finished").count() == 1
    problems = _check_page(page, "leaderboard")
    assert not problems, "\n".join(problems)
    _shot(page, screenshots / "leaderboard.png")
