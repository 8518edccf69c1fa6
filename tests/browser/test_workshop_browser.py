"""The workshop server in Debian's chromium: `python -m app --workshop` with two workers; two participants,
each in their own browser context, name their workspace and start a short run; each sees only their own
run, and the Instructor page (opened by the code) shows both runs and both on the class leaderboard."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import serve_app
from tests.browser.test_app_browser import LONG, _no_errors, _settle, _shot
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.browser

CODE = "teach-123"


@pytest.fixture(scope="module")
def workshop(tmp_path_factory):
    home = tmp_path_factory.mktemp("kdwb_workshop")
    argv = ["-m", "app", "--workshop", "--workers", "2", "--max-queued", "2", "--instructor-code", CODE]
    with serve_app(home, argv) as url:
        yield {"url": url, "home": home}


def _enter(page, url: str, name: str) -> None:
    page.goto(f"{url}/distill", timeout=LONG)
    page.get_by_label("Your workspace name", exact=True).fill(name)
    page.get_by_role("button", name="Enter the workshop").click()
    page.get_by_role("button", name="Start distillation").wait_for(timeout=LONG)
    _settle(page)


def _start_run(page) -> str:
    page.get_by_label("Epochs").first.fill("1")
    page.get_by_label("Training samples (0 = all)").first.fill("64")
    page.get_by_role("button", name="Start distillation").click()
    page.get_by_text("queued: follow it in the").wait_for(timeout=LONG)
    return re.search(r"Run (\S+) queued", page.get_by_text("queued: follow it in the").inner_text()).group(1)


def _finished_runs_listed(page) -> str:
    """The sidebar's list of finished runs (Pair source: Student of a finished run), as text."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Student of a finished run").click()
    _settle(page)
    sidebar.get_by_label("Run", exact=True).click()  # open the select: its options join the page
    return page.locator('[role="listbox"]').inner_text(timeout=LONG)


def test_two_participants_never_see_each_others_runs(workshop, browser, screenshots):
    from kdcore.jobs import RunStore

    url, store = workshop["url"], RunStore(workshop["home"])
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(3)]
    try:
        ada, bob, teacher = (c.new_page() for c in contexts)
        ada.goto(f"{url}/distill", timeout=LONG)
        ada.get_by_label("Your workspace name", exact=True).fill("ada lovelace")
        ada.get_by_role("button", name="Enter the workshop").click()
        ada.get_by_text("1 to 32 letters, digits").wait_for(timeout=LONG)  # a space: refused, clearly
        _shot(ada, screenshots / "workshop_gate.png")
        _enter(ada, url, "ada")
        _enter(bob, url, "bob")
        runs = {"ada": _start_run(ada), "bob": _start_run(bob)}
        assert {store.get_run(r)["workspace"] for r in runs.values()} == {"ada", "bob"}
        wait_until(
            lambda: all(store.get_run(r)["state"] == "completed" for r in runs.values()),
            timeout=300,
            what="both participants' runs to complete",
        )
        assert len(store.list_runs()) == 2
        for page, me, other in ((ada, "ada", "bob"), (bob, "bob", "ada")):
            listed = _finished_runs_listed(page)
            assert runs[me] in listed and runs[other] not in listed
            assert runs[other] not in page.content()
            page.keyboard.press("Escape")
        _shot(ada, screenshots / "workshop_participant.png")

        teacher.goto(f"{url}/instructor", timeout=LONG)
        teacher.get_by_label("Instructor code", exact=True).fill(CODE)
        teacher.get_by_role("button", name="Open the instructor view").click()
        teacher.get_by_role("heading", name="Class leaderboard").wait_for(timeout=LONG)
        teacher.locator('[data-testid="stDataFrame"]').nth(1).wait_for(timeout=LONG)  # board, everyone's runs
        _settle(teacher)
        _no_errors(teacher)
        _shot(teacher, screenshots / "workshop_instructor.png")
        assert teacher.get_by_label("Instructor code", exact=True).count() == 0  # the form is gone
        assert teacher.get_by_text("Participants", exact=True).count() == 1
        assert "2" in teacher.locator('[data-testid="stMetricValue"]').first.inner_text()
    finally:
        for c in contexts:
            c.close()
