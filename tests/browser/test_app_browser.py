"""The running app in Debian's chromium: every page renders its plotly charts, the temperature slider
moves the soft-label chart, a short job shows progress, survives a reload, and is cancelled.

One streamlit server for the whole module (the `app_url` fixture); screenshots go to tests/_screenshots.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

# url path -> (page title shown, plotly charts expected on the digits pair)
PAGES = {
    "": ("Overview", 2),  # the default page lives at the root
    "workshop": ("Workshop path", 0),
    "soft-labels": ("Soft labels and temperature", 4),  # the class-curves chart sits in a closed expander
    "features": ("Features", 2),
    "attention": ("Attention", 1),
    "cams": ("Class activation maps", 2),
    "divergences": ("Divergence components", 3),  # the samples chart sits in a closed expander
    "calibration": ("Calibration", 2),
    "distill": ("Distill", 0),
    "leaderboard": ("Leaderboard", 0),  # a chart once a leaderboard is stored (test_leaderboard_browser.py)
    "doctor": ("Doctor", 0),
}
LONG = 120_000  # ms: the first render loads the pair on a busy 2-core machine


# True once streamlit has shown no 'Running…' status and no spinner for QUIET_MS in a row: a rerun that
# starts just after a widget change is caught, where a single look could fall between two runs.
_QUIET_JS = """(quietMs) => {
    const busy = document.querySelector('[data-testid="stStatusWidget"]')
                 || document.querySelector('[data-testid="stSpinner"]');
    const now = performance.now();
    if (busy || window.__kdwbIdleSince === undefined) window.__kdwbIdleSince = busy ? undefined : now;
    return !busy && now - window.__kdwbIdleSince >= quietMs;
}"""
QUIET_MS = 300


def _settle(page) -> None:
    """Wait until streamlit has finished running the script (no status, no spinner, for QUIET_MS)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=LONG)
    page.evaluate("() => { window.__kdwbIdleSince = undefined; }")
    page.wait_for_function(_QUIET_JS, arg=QUIET_MS, timeout=LONG, polling=50)


# Plotly charts drawn so far: each chart has several .main-svg layers, so count the charts they belong to.
_PLOTS_JS = (
    "new Set([...document.querySelectorAll('.js-plotly-plot .main-svg')].map(e => e.closest('.js-plotly-plot'))).size"
)


def _plots(page) -> int:
    return page.evaluate(f"() => {_PLOTS_JS}")


def _wait_plots(page, n: int) -> None:
    """Wait until n charts are drawn (not n svg layers: one chart alone has two)."""
    page.wait_for_function(f"() => {_PLOTS_JS} >= {n}", timeout=LONG)


# Every visible chart's svg spans its container: plotly has finished laying out at the current size.
_LAID_OUT_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(p => p.offsetParent !== null && p.clientWidth > 0)
    .every(p => { const svg = p.querySelector('.main-svg');
                  return svg && Math.abs(Number(svg.getAttribute('width')) - p.clientWidth) <= 2; })"""


def _shot(page, path) -> None:
    """A screenshot of the whole page: the viewport grows to the main area's height (it scrolls inside)."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 1000")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(height + 40, 1000), 8000)})
    page.wait_for_function(_LAID_OUT_JS, timeout=LONG)  # plotly re-lays out to the new size
    page.screenshot(path=str(path), full_page=True, timeout=LONG)
    page.set_viewport_size(size)


def _no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "a stack trace reached the page"
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert not errors, errors


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders(app_url, page, screenshots, path):
    title, charts = PAGES[path]
    page.goto(f"{app_url}/{path}", timeout=LONG)
    page.get_by_role("heading", name=re.compile(re.escape(title))).first.wait_for(timeout=LONG)
    _settle(page)
    if charts:
        _wait_plots(page, charts)
    _no_errors(page)
    assert _plots(page) >= charts
    if path != "doctor":  # the Doctor page is owned by its own helper
        page.wait_for_selector(
            ".katex", state="attached", timeout=LONG
        )  # formulas typeset (maybe in a closed expander)
    _shot(page, screenshots / f"page_{path or 'overview'}.png")


def test_language_model_pages(app_url, page, screenshots):
    """Switch the sidebar to tinylang in one session and walk the pages that differ for language models."""
    page.goto(app_url, timeout=LONG)
    _settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('[data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile("tinylang")).click()
    _settle(page)
    for link, charts, shot in (
        ("Attention", 3, "lm_attention"),
        ("Divergence components", 1, "lm_divergences"),
        ("Features (CKA)", 2, "lm_features"),
    ):
        sidebar.get_by_role("link", name=re.compile(re.escape(link))).click()
        _settle(page)
        _wait_plots(page, charts)
        _no_errors(page)
        _shot(page, screenshots / f"{shot}.png")


def test_distill_form_follows_the_chosen_pairs_recipe(app_url, page, screenshots):
    """Choosing another pair on the Distill page shows its recipe in the form (the browser keeps a widget's
    value across reruns unless the app sets it: AppTest cannot see this)."""
    from playwright.sync_api import expect

    from kdcore.jobs.recipes import pair_recipe

    page.goto(f"{app_url}/distill", timeout=LONG)
    _settle(page)

    def expect_recipe(pair: str) -> None:  # the Start tab's fields come first (the Protocols tab has its own)
        r = pair_recipe(pair)
        for label, value in (
            ("Epochs", r.epochs),
            ("Batch size", r.batch_size),
            ("Training samples (0 = all)", r.train_size),
        ):
            expect(page.get_by_label(label, exact=True).first).to_have_value(str(value), timeout=30_000)

    expect_recipe("digits")  # the sidebar's pair comes first
    for pair in ("tinylang", "digits"):  # 10 epochs, batch 32, 2048 samples; then back to 50, 64, 512
        page.get_by_role("combobox", name=re.compile("^Pair")).first.click()
        page.get_by_role("option", name=re.compile(pair)).first.click()
        _settle(page)
        expect_recipe(pair)
    _no_errors(page)
    _shot(page, screenshots / "distill_recipe.png")


def test_temperature_slider_moves_the_chart(app_url, page, screenshots):
    page.goto(f"{app_url}/soft-labels", timeout=LONG)
    _settle(page)
    title = page.locator(".js-plotly-plot .gtitle").first
    title.wait_for(timeout=LONG)
    assert "T = 4" in title.text_content()
    bars_before = (
        page.locator(".js-plotly-plot")
        .first.locator(".bars path")
        .evaluate_all("els => els.map(e => e.getAttribute('d'))")
    )
    thumb = page.locator('[data-testid="stMain"]').get_by_role("slider").first  # T (the sidebar has one too)
    thumb.focus()
    for _ in range(8):  # step 0.5: 4 -> 8
        thumb.press("ArrowRight")
    page.wait_for_function(
        "() => (document.querySelector('.js-plotly-plot .gtitle')?.textContent || '').includes('T = 8')", timeout=LONG
    )
    _settle(page)
    bars_after = (
        page.locator(".js-plotly-plot")
        .first.locator(".bars path")
        .evaluate_all("els => els.map(e => e.getAttribute('d'))")
    )
    assert bars_before != bars_after, "the bars must move with the temperature"
    _shot(page, screenshots / "soft_labels_T8.png")


def test_job_progress_reload_and_cancel(app_url, page, screenshots):
    page.goto(f"{app_url}/distill", timeout=LONG)
    _settle(page)
    page.get_by_label("Epochs").first.fill("200")  # long enough to be cancelled mid-run
    page.get_by_label("Training samples (0 = all)").first.fill("0")  # all of them: many steps an epoch
    page.get_by_role("button", name="Start distillation").click()
    page.get_by_text("queued: follow it in the").wait_for(timeout=LONG)
    page.get_by_role("tab", name="Live").click()
    progress = page.locator('[data-testid="stProgress"]').first
    page.wait_for_function(
        "() => /running · step [1-9]/.test(document.querySelector('[data-testid=\"stProgress\"]')?.textContent || '')",
        timeout=LONG,
    )
    _wait_plots(page, 1)
    _shot(page, screenshots / "distill_live.png")

    page.reload()  # a new session: the job is found in the store
    _settle(page)
    page.get_by_role("tab", name="Live").click()
    page.wait_for_function(
        "() => /running · step/.test(document.querySelector('[data-testid=\"stProgress\"]')?.textContent || '')",
        timeout=LONG,
    )
    step_before = int(re.search(r"step (\d+)", progress.inner_text()).group(1))
    page.wait_for_function(
        f"() => Number((document.querySelector('[data-testid=\"stProgress\"]').textContent.match(/step (\\d+)/) || [0, 0])[1]) > {step_before}",
        timeout=LONG,
    )  # still moving after the reload
    page.get_by_role("button", name="Cancel run").click()
    page.wait_for_function(
        "() => /cancelled/.test(document.querySelector('[data-testid=\"stProgress\"]')?.textContent || '')",
        timeout=LONG,
    )
    _no_errors(page)
    _shot(page, screenshots / "distill_cancelled.png")
