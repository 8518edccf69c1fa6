"""Real-browser fixtures: the app served by `streamlit run` on a free loopback port, and Debian's
chromium driven by playwright (playwright cannot download its own browsers here)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "_screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError(
            "Debian's chromium is required for the browser tests: run `make browser-deps` "
            "(apt-get install chromium) or `make test`, which does it for you."
        )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cancel_unfinished_runs(home: Path) -> None:
    from kdcore.jobs import RunStore

    store = RunStore(home)
    for run_id in store.list_runs().query("state in ('queued', 'running')")["id"]:
        store.request_cancel(run_id)


@pytest.fixture(scope="session")
def app_home(tmp_path_factory) -> Path:
    """The app's KDWB_HOME (its run store): tests may put runs there for the pages to list."""
    return tmp_path_factory.mktemp("kdwb_browser")


@contextlib.contextmanager
def serve_app(home: Path, command: list[str]):
    """Serve the app with `command` (its arguments after the python executable) on a free loopback port
    with KDWB_HOME=home; yields its URL, and stops it (cancelling unfinished runs first) at the end."""
    port = _free_port()
    env = {**os.environ, "KDWB_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    log = open(home / "streamlit.log", "w")
    args = [sys.executable, *command, "--server.port", str(port), "--server.address", "127.0.0.1"]
    args += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("streamlit exited early:\n" + (home / "streamlit.log").read_text())
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, timeout=90, interval=0.5, what="streamlit's /_stcore/health")
    except AssertionError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}:\n" + (home / "streamlit.log").read_text()) from exc
    try:
        yield url
    finally:
        _cancel_unfinished_runs(home)  # a failed test must not leave a worker training
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def app_url(app_home):
    """Start the app once for the browser tests; stop it at the end."""
    with serve_app(app_home, ["-m", "streamlit", "run", str(ROOT / "app" / "main.py")]) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


@pytest.fixture(scope="session")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
