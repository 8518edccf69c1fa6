"""Page render timing through streamlit's AppTest (used by bench/app_pages.py; lives here because only the
app package may import streamlit)."""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time

from streamlit.testing.v1 import AppTest


def warm_renders(main: str, pages: list[str], pairs: list[str], repeats: int) -> list[tuple[str, str, float, float]]:
    """(pair, page, first run s, warm median s) for every page and pair, in one process (shared caches)."""
    os.environ["KDWB_HOME"] = tempfile.mkdtemp(prefix="kdwb_bench_")
    for name in ("streamlit", "streamlit.runtime.scriptrunner_utils.script_run_context"):
        logging.getLogger(name).setLevel(logging.ERROR)  # AppTest's bare-mode warnings, once per cached call
    rows = []
    for pair in pairs:
        for page in pages:
            times = []
            for _ in range(repeats + 1):
                at = AppTest.from_file(main, default_timeout=600)
                at.session_state["sample_pair"] = pair
                at.run()  # the default page (its caches are warm after pass 1)
                t = time.perf_counter()
                at.switch_page(f"views/{page}.py").run()
                times.append(time.perf_counter() - t)
                if at.exception:
                    raise RuntimeError(f"{pair}/{page}: {at.exception[0].value}")
            rows.append((pair, page, times[0], statistics.median(times[1:])))
    return rows
