"""The app's layer-subset initialisation of a module pair's student (METHODS §14.2): the Distill form's
"from teacher (layer subset)" option (app/student_init_form.py) and the sidebar box's module:factory case
(app/make_student_box.py), on the tiny CNN pairs of tests/helpers/cnn_pairs.py, each in
AppTest.from_function (the widget alone, not the whole app)."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load

from kdcore.data.sources import DataSource
from kdcore.jobs.own_source import OwnPairSource
from tests.helpers.cnn_pairs import TinyResNet, cnn_pair, cnn_wide_pair


def _form() -> None:  # the AppTest script: the form's choice for the pair named in session_state
    import streamlit as st

    from app.student_init_form import pair_student_init
    from tests.helpers import cnn_pairs

    pair = getattr(cnn_pairs, st.session_state["factory"])()
    st.session_state["chosen"] = pair_student_init(pair)


def _box() -> None:
    import streamlit as st

    from app import make_student_box

    make_student_box.render(st.sidebar)


def _run_form(factory: str, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_form, default_timeout=30)
    at.session_state["factory"] = factory
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def test_the_form_offers_from_teacher_with_the_mapping_for_a_fitting_pair():
    at = _run_form("cnn_pair")
    assert not at.exception, at.exception
    box = at.checkbox(key="job_pair_from_teacher")
    assert not box.disabled and at.session_state["chosen"] == ("reinit", "spread")
    box.check().run()
    assert at.session_state["chosen"] == ("from_teacher", "spread")
    assert "layer1 ← [0, 2], layer2 ← [0, 3]" in " ".join(c.value for c in at.caption)
    at.selectbox(key="job_pair_layer_rule").select("first").run()
    assert at.session_state["chosen"] == ("from_teacher", "first")
    assert "layer1 ← [0, 1], layer2 ← [0, 1]" in " ".join(c.value for c in at.caption)


def test_the_form_disables_from_teacher_with_the_reason_for_another_pair():
    at = _run_form("cnn_wide_pair", job_pair_from_teacher=True)
    assert not at.exception, at.exception
    assert at.checkbox(key="job_pair_from_teacher").disabled
    assert at.session_state["chosen"] == ("reinit", "spread")
    assert "Not for this pair" in at.caption[0].value and "not a shallower copy" in at.caption[0].value


@pytest.fixture
def loaded(monkeypatch):
    """The sidebar's own module:factory pair, as app.state would load it (the tiny CNN pairs)."""
    from app import state

    pairs = {"cnn": cnn_pair(), "wide": cnn_wide_pair()}
    monkeypatch.setattr(state, "pair_from_key", lambda key: pairs[key[1].teacher])
    return pairs


def _run_box(which: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_box, default_timeout=30)
    at.session_state["own_mode"] = "module:factory + safetensors"
    at.session_state["own_spec"] = OwnPairSource("factory", which, which, DataSource("builtin", "digits"), "classifier")
    return at.run()


def test_the_box_initialises_the_module_students_copy_and_shows_the_mapping(loaded):
    at = _run_box("cnn")
    assert not at.exception, at.exception
    assert "fewer blocks per stage" in " ".join(c.value for c in at.sidebar.caption)
    before = {k: v.clone() for k, v in loaded["cnn"].student.model.state_dict().items()}
    at.sidebar.button(key="make_student_module_go").click().run()
    assert not at.exception, at.exception
    table = at.sidebar.dataframe[0].value
    assert list(table["container"]) == ["layer1", "layer1", "layer2", "layer2"]
    assert list(table["student block"]) == [0, 1, 0, 1] and list(table["teacher block"]) == [0, 2, 0, 3]
    state = load(at.session_state["make_student_module_done"][3])
    student = TinyResNet((2, 2), classes=4)
    student.load_state_dict(state, strict=True)
    teacher = loaded["cnn"].teacher.model.state_dict()
    for key, value in state.items():
        t_key = key.replace("layer1.1.", "layer1.2.").replace("layer2.1.", "layer2.3.")
        np.testing.assert_array_equal(value.numpy(), teacher[t_key].numpy(), err_msg=key)
    assert all(v.equal(loaded["cnn"].student.model.state_dict()[k]) for k, v in before.items())  # cache untouched


def test_the_box_refuses_a_student_that_is_not_a_shallower_copy(loaded):
    at = _run_box("wide")
    assert not at.exception, at.exception
    assert "not a shallower copy of the teacher" in at.sidebar.warning[0].value
    assert not at.sidebar.button and "make_student_module_done" not in at.session_state
