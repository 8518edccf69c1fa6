"""The shared workshop server (`python -m app --workshop`): its settings, and each participant's workspace.

The launcher (app/__main__.py) turns its flags into environment variables, which a deployment may
set instead: KDWB_WORKSHOP=1 (workshop mode), KDWB_WORKERS (parallel background workers, default
the machine's cores), KDWB_MAX_QUEUED (runs a participant may have queued or running at once) and
KDWB_INSTRUCTOR_CODE (opens the Instructor page). In workshop mode every browser session names its
workspace once; `state.store()` is then that workspace's view of the run store
(kdcore/jobs/workspace.py), so every list the pages show holds only the participant's own runs.
Without KDWB_WORKSHOP nothing here changes the app. The settings part imports neither streamlit nor torch.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass

WORKSHOP_ENV = "KDWB_WORKSHOP"
MAX_QUEUED_ENV = "KDWB_MAX_QUEUED"
CODE_ENV = "KDWB_INSTRUCTOR_CODE"
DEFAULT_MAX_QUEUED = 3
PARTICIPANT_KEY = "workshop_participant"  # st.session_state: this browser session's workspace
INSTRUCTOR_KEY = "workshop_instructor"  # st.session_state: True once the instructor code was given


@dataclass(frozen=True)
class Settings:
    """What the workshop server was started with."""

    workers: int  # background workers draining the shared queue
    max_queued: int  # runs one participant may have queued or running at once
    instructor_code: str | None  # None: the Instructor page stays closed


def enabled(env: dict | None = None) -> bool:
    """True when the app serves a workshop (KDWB_WORKSHOP set to 1, true, yes or on)."""
    return (env if env is not None else os.environ).get(WORKSHOP_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _positive(env: dict, name: str, default: int, flag: str) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive integer. Got {text!r}. Set it (or {flag}) to 1 or more.")
    return int(text)


def settings(env: dict | None = None) -> Settings:
    """The workshop settings from the environment, with their defaults (cores, DEFAULT_MAX_QUEUED)."""
    from kdcore.jobs.executors import max_workers
    from kdcore.jobs.worker import WORKERS_ENV

    env = env if env is not None else dict(os.environ)
    return Settings(
        workers=_positive(env, WORKERS_ENV, max_workers(), "--workers"),
        max_queued=_positive(env, MAX_QUEUED_ENV, DEFAULT_MAX_QUEUED, "--max-queued"),
        instructor_code=env.get(CODE_ENV, "").strip() or None,
    )


def launch_env(workers: int | None, max_queued: int | None, code: str | None, env: dict) -> dict[str, str]:
    """The variables the launcher sets for a workshop: the given values, else those already in `env`,
    else the defaults (a fresh instructor code), and one torch thread pool per worker's share of cores."""
    from kdcore.jobs.executors import check_workers, max_workers
    from kdcore.jobs.worker import WORKERS_ENV

    base = settings(env)
    n = check_workers(workers) if workers is not None else base.workers
    if max_queued is not None and max_queued < 1:
        raise ValueError(
            f"--max-queued is the runs a participant may have queued or running, 1 or more. Got {max_queued}."
        )
    out = {
        WORKSHOP_ENV: "1",
        WORKERS_ENV: str(n),
        MAX_QUEUED_ENV: str(max_queued if max_queued is not None else base.max_queued),
        CODE_ENV: code or base.instructor_code or secrets.token_urlsafe(6),
    }
    if not env.get("OMP_NUM_THREADS"):
        out["OMP_NUM_THREADS"] = str(max(1, max_workers() // n))  # N workers share the cores
    return out


def export_workers() -> None:
    """Put the worker count into this process's environment when only KDWB_WORKSHOP was set (a plain
    `streamlit run app/main.py`), so the workers `submit` starts use as many slots as the page shows."""
    from kdcore.jobs.worker import WORKERS_ENV

    os.environ.setdefault(WORKERS_ENV, str(settings().workers))


def code_matches(given: str, expected: str | None) -> bool:
    """True when the instructor code given is the one set at launch (compared in constant time)."""
    return expected is not None and hmac.compare_digest(given.strip().encode(), expected.encode())
