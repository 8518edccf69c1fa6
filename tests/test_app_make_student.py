"""The sidebar's "make a shallower student" box (app/make_student_box.py, METHODS §14.2): it previews the
kept teacher layers, writes the student where the user says (or under $KDWB_HOME/students), selects it as
the own pair's student, and refuses a student not shallower than its teacher, a teacher that cannot be
subset and a directory that cannot be written, in plain words.

Models: the tiny Hugging Face pairs of tests/helpers/hf_pairs.py (teachers of 4 layers); the box runs in
AppTest.from_function (the sidebar alone, not the whole app).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest


def _box() -> None:  # the AppTest script: the box alone, in the sidebar
    import streamlit as st

    from app import make_student_box

    make_student_box.render(st.sidebar)


def _spread(n_t: int, n_s: int) -> list[int]:
    """§14.2's spread rule, computed independently: round half to even of i·(L_t − 1)/(L_s − 1)."""
    return [0] if n_s == 1 else [int(np.rint(i * (n_t - 1) / (n_s - 1))) for i in range(n_s)]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from tests.helpers.hf_pairs import bert_encoder_pair, bert_pair, llama_pair

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("make_student")
    mp.setenv("KDWB_HOME", str(root / "home"))
    teachers = {
        "causal_lm": llama_pair(root)[0],
        "classifier": bert_pair(root)[0],
        "encoder": bert_encoder_pair(root)[0],
    }
    yield {"root": root, "teachers": teachers}
    mp.undo()


def _app(teacher: Path | str, kind: str = "causal_lm", **state) -> AppTest:
    at = AppTest.from_function(_box, default_timeout=60)
    at.session_state["own_mode"] = "Hugging Face directories"
    at.session_state["own_kind"] = kind
    at.session_state["own_teacher_dir"] = str(teacher)
    at.session_state["own_data_choice"] = "A built-in dataset"
    at.session_state["own_dataset"] = "digits"
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _texts(at: AppTest, what: str) -> str:
    return " ".join(e.value for e in getattr(at.sidebar, what))


def test_the_preview_follows_the_spread_rule_and_distilbert(tmp_path):
    from app.make_student_box import layer_plan

    model = tmp_path / "bert12"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 12}))
    (model / "model.safetensors").write_bytes(b"")  # the plan reads config.json only
    assert layer_plan(str(model), 6).indices == [0, 2, 4, 7, 9, 11] == _spread(12, 6)
    for n_s in range(1, 12):
        assert layer_plan(str(model), n_s).indices == _spread(12, n_s)
    assert layer_plan(str(model), 4, "stride").indices == [0, 3, 6, 9]


def test_the_box_previews_the_kept_layers(home):
    at = _app(home["teachers"]["causal_lm"], make_student_layers=3)  # 4 → 3: 1.5 rounds to 2 (half to even)
    assert not at.exception, at.exception
    assert f"keeps teacher layers {_spread(4, 3)}" in _texts(at, "caption") and _spread(4, 3) == [0, 2, 3]
    assert at.sidebar.text_input(key="make_student_out").placeholder.endswith("llama_teacher-3of4-spread")


@pytest.mark.parametrize("kind", ["causal_lm", "classifier", "encoder"])
def test_the_student_is_written_selected_and_loads(home, kind, tmp_path):
    """Each tiny pair: the written student has 2 layers, is the form's student and the loaded spec's; for the
    causal LM every student tensor equals the teacher's tensor of the kept layer (read back from the files)."""
    from safetensors.torch import load_file

    from kdcore.adapters import load_hf

    teacher = home["teachers"][kind]
    out = tmp_path / "student"
    at = _app(teacher, kind, make_student_layers=2, make_student_out=str(out))
    at.sidebar.button(key="make_student_go").click().run()
    assert not at.exception, at.exception
    assert not _texts(at, "error"), _texts(at, "error")
    assert f"Student written to {str(out)!r} (teacher layers [0, 3])" in _texts(at, "success")
    assert at.session_state["own_student_dir"] == str(out)
    spec = at.session_state["own_spec"]
    assert (spec.mode, spec.teacher, spec.student) == ("hf", str(teacher), str(out))
    hf_kind = "sequence_classification" if kind == "classifier" else kind
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    assert load_hf(out, kind=hf_kind).num_parameters() > 0
    if kind == "causal_lm":
        t, s = load_file(str(teacher / "model.safetensors")), load_file(str(out / "model.safetensors"))
        for key, tensor in s.items():
            t_key = key.replace("layers.1.", "layers.3.")  # student layer 1 ← teacher layer 3; 0 ← 0
            np.testing.assert_array_equal(tensor.numpy(), t[t_key].numpy(), err_msg=key)


def test_the_default_directory_is_under_the_workbench_home(home):
    at = _app(home["teachers"]["causal_lm"], make_student_layers=1)
    at.sidebar.button(key="make_student_go").click().run()
    out = Path(home["root"]) / "home" / "students" / "llama_teacher-1of4-spread"
    assert (out / "config.json").is_file() and at.session_state["own_student_dir"] == str(out)


def test_a_student_not_shallower_than_the_teacher_is_refused(home):
    at = _app(home["teachers"]["causal_lm"], make_student_layers=4)
    assert "fewer layers than the teacher's 4" in _texts(at, "warning") and "choose 1 to 3" in _texts(at, "warning")
    assert not at.sidebar.button  # nothing to press


def test_a_teacher_that_cannot_be_subset_is_refused(home, tmp_path):
    from app.make_student_box import layer_plan

    odd = tmp_path / "no_layers"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"architectures": ["ResNetForImageClassification"]}))
    (odd / "model.safetensors").write_bytes(b"")
    assert "cannot be subset by layers" in _texts(_app(odd), "warning")
    with pytest.raises(ValueError, match="not a Hugging Face model directory"):
        layer_plan(str(tmp_path), 1)
    factory = _app("", own_mode="module:factory + safetensors")
    assert "Load your module:factory pair with the form above first" in _texts(factory, "info")


def test_an_unwritable_directory_is_refused_before_anything_is_written(home, tmp_path):
    from app.make_student_box import check_out_dir, layer_plan

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    at = _app(home["teachers"]["causal_lm"], make_student_layers=2, make_student_out=str(blocker / "student"))
    at.sidebar.button(key="make_student_go").click().run()
    assert "cannot be written" in _texts(at, "error") and "is not a directory" in _texts(at, "error")
    assert "own_student_dir" not in at.session_state
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("taken")
    plan = layer_plan(str(home["teachers"]["causal_lm"]), 2)
    with pytest.raises(ValueError, match="is not empty. Name a new or empty directory"):
        check_out_dir(str(full), plan)
