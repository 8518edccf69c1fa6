"""Waiting on a condition with a deadline, instead of sleeping a fixed time and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.05, what: str = "") -> T:
    """Poll `condition` until it returns a truthy value, and return that value.

    Fails the test with `what` (what was awaited) once `timeout` seconds pass without it. Exceptions
    raised by `condition` propagate: a condition that cannot be evaluated is a failure, not a wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition!r}")
        time.sleep(interval)
