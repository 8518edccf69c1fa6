"""Driving the Streamlit app in AppTest: its entry file, a module's own KDWB_HOME, a page opened with session
state set, and the sidebar's own-pair form (typed in, or called as `app.state._own_spec`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from kdcore.jobs.own_source import OwnPairSource

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
HF_DIRS = "Hugging Face directories"
FACTORY = "module:factory + safetensors"


def ok(at: AppTest) -> None:
    """The page raised nothing and showed no st.error."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@contextmanager
def kdwb_home(tmp_path_factory: Any, name: str) -> Iterator[Path]:
    """A fresh folder `name` set as KDWB_HOME until the block ends (for module-scoped fixtures, which cannot
    take the function-scoped monkeypatch)."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp(name)
    mp.setenv("KDWB_HOME", str(home))
    try:
        yield home
    finally:
        mp.undo()


def started(**state: Any) -> AppTest:
    """The app run once with `state` in its session_state."""
    at = AppTest.from_file(MAIN, default_timeout=180)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    return at


def open_page(page: str, *, errors_ok: bool = False, **state: Any) -> AppTest:
    """The app started with `state`, switched to views/PAGE.py; it raised nothing (and, unless errors_ok,
    showed no st.error)."""
    at = started(**state)
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    if not errors_ok:
        ok(at)
    return at


def own_spec(
    kind: str,
    teacher: Any,
    student: Any,
    *,
    source: str = HF_DIRS,
    weights: tuple = (None, None),
    data: int = 2,
    upload: Any = None,
    **fields: Any,
) -> OwnPairSource:
    """The sidebar's load spec (app.state._own_spec) of an own pair: `source` and `kind`, the two models (paths
    or module:factory names), the teacher's and the student's weight files, data choice DATA_CHOICES[data],
    sample data 'digits', `upload`, label field 'label'; `fields` the keyword ones (data_path, context_length,
    text_field)."""
    from app import state

    return state._own_spec(
        source,
        kind,
        str(teacher),
        str(student),
        *weights,
        state.DATA_CHOICES[data],
        "digits",
        upload,
        "label",
        **fields,
    )


def start_distill_run(at: AppTest, max_steps: int, train_size: int) -> str:
    """On the Distill page: a budget of `max_steps` steps on `train_size` samples, **Start distillation**
    pressed (no exception, no st.error); the run id it queued."""
    at.number_input(key="job_max_steps").set_value(max_steps)
    at.number_input(key="job_train_size").set_value(train_size)
    at.button(key="FormSubmitter:new_run-Start distillation").click().run()
    ok(at)
    return at.session_state["watch_run"]


def load_own_pair(kind: str, teacher: Any, student: Any, data_path: Any, context: int, **state: Any) -> AppTest:
    """The app with an own Hugging Face pair loaded through the sidebar's form (paths typed, nothing uploaded,
    probe size 16, `state` in session_state); no exception, no st.error."""
    from app.state import DATA_CHOICES

    at = started(**{"pair_source": "Your own models", "probe_size": 16, **state})
    at.selectbox(key="own_kind").set_value(kind)
    at.text_input(key="own_teacher_dir").set_value(str(teacher))
    at.text_input(key="own_student_dir").set_value(str(student))
    at.selectbox(key="own_data_choice").set_value(DATA_CHOICES[2])
    at.text_input(key="own_data_path").set_value(str(data_path))
    at.number_input(key="own_context_length").set_value(context)
    at.sidebar.button[0].click().run()
    ok(at)
    return at
