"""Which pair the sidebar chose, loaded once and shared read-only by every session.

Pairs are `st.cache_resource`: one object for all sessions, so nothing here or in the pages may
mutate a model (adapters run in scoped eval contexts; training clones). Uploaded files are stored
under $KDWB_HOME/uploads by content hash, so a re-upload costs nothing and a session never sees
another's half-written file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

import sample_models
from kdcore.adapters import load_factory, load_hf
from kdcore.jobs.store import RunStore, default_home
from kdcore.pairs import Pair
from kdcore.weights import apply_state_dict

# ---- sample pairs ----------------------------------------------------------------------------------

def sample_pair_names() -> list[str]:
    return list(sample_models.PAIRS)


_SAMPLE_BLURBS = {
    "digits": "digits · 8×8 handwritten digits, CNN teacher → tiny CNN",
    "shapes": "shapes · generated shapes with masks, CNN teacher → small CNN",
    "shapes_multilabel": "shapes (multi-label) · 1–3 shapes per image",
    "tinylang": "tinylang · token language with copy segments, 2-layer → 1-layer transformer",
}


def describe_sample_pair(name: str) -> str:
    return _SAMPLE_BLURBS.get(name, name)


@st.cache_resource(show_spinner="Loading the sample pair…")
def _sample_pair(name: str) -> Pair:
    return sample_models.load_pair(name)


# ---- students of finished runs ---------------------------------------------------------------------

def store() -> RunStore:
    return RunStore()


def finished_runs() -> dict[str, str]:
    """Completed runs: id -> a readable label."""
    df = store().list_runs(state="completed")
    return {r.id: f"{r.id} · {r.pair} · {r.objective}" for r in df.itertuples()}


@st.cache_resource(show_spinner="Loading the run's student…", max_entries=8)
def _run_pair(run_id: str) -> Pair:
    run = store().get_run(run_id)
    base = _sample_pair(run["pair"])
    student = base.student.clone()
    apply_state_dict(student.model, store().load_student(run_id))
    return Pair(name=f"{run['pair']} · run {run_id}", teacher=base.teacher, student=student,
                student_baseline=base.student_baseline, dataset=base.dataset)


# ---- the user's own models -------------------------------------------------------------------------

def _save_upload(upload) -> Path:
    """Store an uploaded file by content hash; return its path."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = default_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{Path(upload.name).suffix}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


@st.cache_resource(show_spinner="Loading your models…", max_entries=4)
def _own_pair(spec: tuple) -> Pair:
    mode, teacher_src, student_src, dataset_name, kind = spec
    dataset = sample_models.get_dataset(dataset_name) if dataset_name else None
    if mode == "hf":
        teacher = load_hf(teacher_src, kind=kind)
        student = load_hf(student_src, kind=kind)
    else:
        (t_factory, t_weights), (s_factory, s_weights) = teacher_src, student_src
        teacher = load_factory(t_factory, t_weights, kind=kind)
        student = load_factory(s_factory, s_weights, kind=kind)
    return Pair(name="your pair", teacher=teacher, student=student, dataset=dataset)


def own_models_form(sb) -> None:
    """Sidebar form for the user's own teacher and student; stores a load spec on submit."""
    with sb.form("own_models"):
        mode = st.radio("Format", ["Hugging Face directories", "module:factory + safetensors"], key="own_mode")
        kind = st.selectbox("Kind", ["causal_lm", "classifier"], key="own_kind",
                            help="Causal language models, or image/table classifiers.")
        if mode.startswith("Hugging"):
            t = st.text_input("Teacher directory", key="own_teacher_dir", placeholder="/path/to/teacher")
            s = st.text_input("Student directory", key="own_student_dir", placeholder="/path/to/student")
        else:
            t = st.text_input("Teacher factory", key="own_teacher_factory", placeholder="mypkg.models:make_teacher")
            tw = st.file_uploader("Teacher weights (.safetensors)", type=["safetensors"], key="own_teacher_w")
            s = st.text_input("Student factory", key="own_student_factory", placeholder="mypkg.models:make_student")
            sw = st.file_uploader("Student weights (.safetensors)", type=["safetensors"], key="own_student_w")
        data = st.selectbox("Evaluate on", ["(none)"] + list(sample_models.DATASETS), key="own_dataset")
        if st.form_submit_button("Load pair"):
            ds = None if data == "(none)" else data
            hf_kind = "sequence_classification" if kind == "classifier" else kind
            if mode.startswith("Hugging"):
                st.session_state["own_spec"] = ("hf", t.strip(), s.strip(), ds, hf_kind)
            elif tw is None or sw is None:
                st.session_state["own_error"] = "Upload a .safetensors file for both the teacher and the student."
                return
            else:
                st.session_state["own_spec"] = ("factory", (t.strip(), str(_save_upload(tw))),
                                                (s.strip(), str(_save_upload(sw))), ds, kind)
            st.session_state.pop("own_error", None)


# ---- the current choice ----------------------------------------------------------------------------

def pair_key() -> tuple:
    """A hashable key for the current choice, for st.cache_data'd analyses."""
    source = st.session_state.get("pair_source", "Sample pair")
    if source == "Student of a finished run":
        return ("run", st.session_state.get("run_student"))
    if source == "Your own models":
        return ("own", st.session_state.get("own_spec"))
    return ("sample", st.session_state.get("sample_pair", sample_pair_names()[0]))


def pair_from_key(key: tuple) -> Pair | None:
    source, value = key
    if value is None:
        return None
    if source == "run":
        return _run_pair(value)
    if source == "own":
        return _own_pair(value)
    return _sample_pair(value)


def current_pair(*, quiet: bool = False) -> Pair | None:
    """The chosen pair, or None (with a message unless quiet) when none is chosen or it failed to load."""
    if st.session_state.get("own_error") and not quiet:
        st.error(st.session_state["own_error"])
    try:
        pair = pair_from_key(pair_key())
    except Exception as exc:  # noqa: BLE001 — shown in plain words; the app keeps running
        if not quiet:
            st.error(f"Could not load the pair: {exc}", icon="⚠️")
        return None
    if pair is None and not quiet:
        st.info("Choose a pair in the sidebar to begin.")
    return pair


def device() -> str:
    return st.session_state.get("device", "cpu")


def probe_size() -> int:
    return int(st.session_state.get("probe_size", 64))
