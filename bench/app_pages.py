"""Benchmark of the workbench app on CPU: cold start to the first page rendered, and each page's render
time with warm caches on every sample pair (goal: every page under 2 s).

    python bench/app_pages.py [--pairs digits,tinylang] [--repeats 3] [--no-browser]

Cold start: `streamlit run app/main.py` in a fresh process and a fresh run store, timed until Debian's
chromium shows the Overview's charts (or, with --no-browser, until the first script run finishes in
AppTest). Warm render: each page run through streamlit's AppTest (app/perf.py) after one untimed run that fills the
caches; the median of --repeats runs. The baseline is the same measurement of a page that computes
nothing (the Workshop path), so the ratio says what a page's own work costs on top of Streamlit's.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "app" / "main.py")
PAGES = [
    "overview",
    "workshop",
    "soft_labels",
    "features",
    "attention",
    "cams",
    "divergences",
    "calibration",
    "distill",
    "leaderboard",
    "doctor",
]
GOAL_S = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start(browser: bool) -> tuple[float, str]:
    """Seconds from launching streamlit to the first page rendered (charts drawn)."""
    home = tempfile.mkdtemp(prefix="kdwb_bench_")
    port = _free_port()
    env = {**os.environ, "KDWB_HOME": home}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            MAIN,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 180:
                    raise RuntimeError("streamlit did not start") from None
                time.sleep(0.1)
        healthy = time.perf_counter() - t0
        if not browser:
            return healthy, "server healthy (no browser)"
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=180_000)
            page.wait_for_function(
                "() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=180_000
            )
            first = time.perf_counter() - t0
            b.close()
        return first, f"server healthy after {healthy:.1f} s"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", default=None, help="comma-separated sample pairs (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true", help="time cold start to server health only")
    args = ap.parse_args()
    import torch

    import sample_models

    pairs = args.pairs.split(",") if args.pairs else list(sample_models.PAIRS)
    print(
        f"KD Workbench app benchmark · CPU · torch {torch.__version__} · {torch.get_num_threads()} threads · "
        f"{os.cpu_count()} cores"
    )
    cold, note = cold_start(browser=not args.no_browser)
    print(f"\ncold start to the first page rendered: {cold:.1f} s ({note})\n")
    from app.perf import warm_renders

    rows = warm_renders(MAIN, PAGES, pairs, args.repeats)
    base = {pair: warm for pair, page, _, warm in rows if page == "workshop"}
    print(f"{'pair':<18} {'page':<12} {'first run s':>11} {'warm s':>8} {'× baseline':>11}  goal < {GOAL_S:g} s")
    for pair, page, first, warm in rows:
        ok = "ok" if warm < GOAL_S else "SLOW"
        print(f"{pair:<18} {page:<12} {first:>11.2f} {warm:>8.3f} {warm / base[pair]:>11.1f}  {ok}")
    worst = max(rows, key=lambda r: r[3])
    print(
        f"\nbaseline = the Workshop page (computes nothing). Slowest warm page: {worst[0]}/{worst[1]} "
        f"{worst[3]:.3f} s; {sum(r[3] < GOAL_S for r in rows)}/{len(rows)} pages under {GOAL_S:g} s."
    )


if __name__ == "__main__":
    main()
