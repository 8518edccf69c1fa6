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
import torch

import sample_models
from app import safety
from kdcore.adapters import load_factory, load_hf
from kdcore.data import DATASETS, get_dataset, load_image_folder, load_table, load_text
from kdcore.data.archive import extract_zip
from kdcore.jobs.store import RunStore, default_home
from kdcore.pairs import Pair
from kdcore.weights import apply_state_dict

UPLOAD_LIMIT_MB = 50  # largest dataset or weights file read from an upload (also .streamlit/config.toml)
_UNZIP_LIMIT = 200 * 2**20  # largest total size an uploaded image-folder zip may expand to
DATA_CHOICES = (
    "A built-in dataset",
    "Upload a table (.csv, .tsv, .parquet)",
    "Upload text (.txt)",
    "Upload images (.zip of class folders)",
)

# ---- sample pairs ----------------------------------------------------------------------------------


def sample_pair_names() -> list[str]:
    return list(sample_models.PAIRS)


_SAMPLE_BLURBS = {
    "digits": "digits · handwritten 8×8",
    "shapes": "shapes · images with masks",
    "shapes_multilabel": "shapes · multi-label",
    "tinylang": "tinylang · language model",
}


def describe_sample_pair(name: str) -> str:
    return _SAMPLE_BLURBS.get(name, name)


@st.cache_resource(show_spinner="Loading the sample pair…")
def _sample_pair(name: str) -> Pair:
    return sample_models.load_pair(name)


# ---- students of finished runs ---------------------------------------------------------------------


def store() -> RunStore:
    """The run store in $KDWB_HOME (every call opens its own connections: safe across sessions)."""
    return RunStore()


def finished_runs() -> dict[str, str]:
    """Completed runs: id -> a readable label."""
    df = store().list_runs(state="completed")
    return {r.id: f"{r.id} · {r.pair} · {r.objective}" + (f" · {r.name}" if r.name else "") for r in df.itertuples()}


@st.cache_resource(show_spinner="Loading the run's student…", max_entries=8)
def _run_pair(run_id: str, epoch: int | None = None) -> Pair:
    """The pair a run distilled, with the run's student (final weights, or those of a checkpoint epoch)."""
    run = store().get_run(run_id)
    if run["pair"] not in sample_models.PAIRS:
        raise ValueError(
            f"Run {run_id} distilled pair {run['pair']!r}, which is not a sample pair: "
            f"only sample-pair runs can be reopened here."
        )
    base = _sample_pair(run["pair"])
    student = base.student.clone()  # never touch the shared, cached student
    apply_state_dict(student.model, store().load_student(run_id, epoch=epoch))
    student.model.eval()
    label = f"{run['pair']} · run {run_id}" + (f" · epoch {epoch}" if epoch is not None else "")
    return Pair(
        name=label, teacher=base.teacher, student=student, student_baseline=base.student_baseline, dataset=base.dataset
    )


# ---- the user's own models and data ----------------------------------------------------------------


def _save_upload(upload, suffix: str | None = None) -> Path:
    """Store an uploaded file by content hash (size-checked); return its path."""
    data = upload.getvalue()
    if len(data) > UPLOAD_LIMIT_MB * 2**20:
        raise ValueError(f"The file {upload.name!r} is {len(data) / 2**20:.1f} MB; the limit is {UPLOAD_LIMIT_MB} MB.")
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = default_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{suffix or Path(upload.name).suffix.lower()}"
    if not path.exists():
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _unzip_images(zip_path: Path) -> Path:
    """Extract an uploaded zip of class folders next to it (bounded, all or nothing: kdcore.data.archive)."""
    return extract_zip(zip_path, max_bytes=_UNZIP_LIMIT)


def _dataset_from_spec(spec: tuple | None):
    if spec is None:
        return None
    kind, value, option = spec
    if kind == "builtin":
        return get_dataset(value)
    if kind == "table":
        return load_table(Path(value), label_column=option)
    if kind == "text":
        return load_text(Path(value), tokenizer=option)
    return load_image_folder(_unzip_images(Path(value)))


@st.cache_resource(show_spinner="Loading your models…", max_entries=4)
def _own_pair(spec: tuple) -> Pair:
    mode, teacher_src, student_src, data_spec, kind = spec
    dataset = _dataset_from_spec(data_spec)
    if mode == "hf":
        teacher = load_hf(teacher_src, kind=kind)
        student = load_hf(student_src, kind=kind)
    else:
        (t_factory, t_weights), (s_factory, s_weights) = teacher_src, student_src
        safety.check_factory(t_factory)  # every path to load_factory is checked
        safety.check_factory(s_factory)
        teacher = load_factory(t_factory, t_weights, kind=kind)
        student = load_factory(s_factory, s_weights, kind=kind)
    return Pair(name="your pair", teacher=teacher, student=student, dataset=dataset)


def own_models_form(sb) -> None:
    """Sidebar form for the user's own teacher, student and data; stores a load spec on submit."""
    with sb.form("own_models"):
        mode = st.radio("Format", ["Hugging Face directories", "module:factory + safetensors"], key="own_mode")
        kind = st.selectbox(
            "Kind",
            ["classifier", "causal_lm"],
            key="own_kind",
            help="Image/table classifiers, or causal language models.",
        )
        if mode.startswith("Hugging"):
            t = st.text_input("Teacher directory", key="own_teacher_dir", placeholder="/path/to/teacher")
            s = st.text_input("Student directory", key="own_student_dir", placeholder="/path/to/student")
            tw = sw = None
        else:
            t = st.text_input("Teacher factory", key="own_teacher_factory", placeholder="mypkg.models:make_teacher")
            tw = st.file_uploader("Teacher weights (.safetensors)", type=["safetensors"], key="own_teacher_w")
            s = st.text_input("Student factory", key="own_student_factory", placeholder="mypkg.models:make_student")
            sw = st.file_uploader("Student weights (.safetensors)", type=["safetensors"], key="own_student_w")
            st.caption(safety.module_loading_note())
        data_choice = st.selectbox(
            "Data",
            DATA_CHOICES,
            key="own_data_choice",
            help=f"Uploads up to {UPLOAD_LIMIT_MB} MB. Nothing leaves this machine.",
        )
        builtin = st.selectbox("Built-in dataset", list(DATASETS), key="own_dataset")
        upload = st.file_uploader("Your data file", type=["csv", "tsv", "parquet", "txt", "zip"], key="own_data_file")
        option = st.text_input(
            "Label column (tables) or tokenizer 'char'/'word' (text)", key="own_data_option", value="label"
        )
        if st.form_submit_button("Load pair"):
            try:
                st.session_state["own_spec"] = _own_spec(mode, kind, t, s, tw, sw, data_choice, builtin, upload, option)
                st.session_state.pop("own_error", None)
            except ValueError as exc:
                st.session_state["own_error"] = str(exc)


def _own_spec(mode, kind, t, s, tw, sw, data_choice, builtin, upload, option) -> tuple:
    """The hashable load spec for the user's pair (files stored by content hash), or ValueError."""
    if not (t or "").strip() or not (s or "").strip():
        raise ValueError("Fill in both the teacher and the student.")
    if not mode.startswith("Hugging"):
        safety.check_factory(t.strip())  # before anything is imported or stored
        safety.check_factory(s.strip())
    if data_choice == DATA_CHOICES[0]:
        data = ("builtin", builtin, None)
    elif upload is None:
        raise ValueError("Choose a data file to upload, or pick a built-in dataset.")
    else:
        path = _save_upload(upload)
        if data_choice == DATA_CHOICES[1]:
            data = ("table", str(path), option.strip() or "label")
        elif data_choice == DATA_CHOICES[2]:
            tok = option.strip() if option.strip() in ("char", "word") else "char"
            data = ("text", str(path), tok)
        else:
            data = ("images", str(path), None)
    if mode.startswith("Hugging"):
        hf_kind = "sequence_classification" if kind == "classifier" else kind
        return ("hf", t.strip(), s.strip(), data, hf_kind)
    if tw is None or sw is None:
        raise ValueError("Upload a .safetensors file for both the teacher and the student.")
    return ("factory", (t.strip(), str(_save_upload(tw))), (s.strip(), str(_save_upload(sw))), data, kind)


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
    source, value = key[0], key[1]
    if value is None:
        return None
    if source == "run":
        return _run_pair(value, key[2] if len(key) > 2 else None)
    if source == "own":
        return _own_pair(value)
    return _sample_pair(value)


@st.cache_resource(max_entries=4, show_spinner="Copying the pair to the device…")
def _pair_on(key: tuple, device: str) -> Pair:
    pair = pair_from_key(key)

    def move(adapter):  # a copy on the device; the CPU original is untouched
        return None if adapter is None else adapter.to(device)

    return Pair(
        name=pair.name,
        teacher=move(pair.teacher),
        student=move(pair.student),
        student_baseline=move(pair.student_baseline),
        dataset=pair.dataset,
    )


def pair_on(key: tuple, device: str = "cpu") -> Pair | None:
    """The pair for `key` with its models on `device` (shared, read-only)."""
    if device == "cpu" or key[1] is None:
        return pair_from_key(key)
    return _pair_on(key, device)


def current_pair(*, quiet: bool = False) -> Pair | None:
    """The chosen pair, or None (with a message unless quiet) when none is chosen or it failed to load."""
    if st.session_state.get("own_error") and not quiet:
        st.error(st.session_state["own_error"], icon=":material/error:")
    try:
        pair = pair_from_key(pair_key())
    except Exception as exc:  # noqa: BLE001 — shown in plain words; the app keeps running
        if not quiet:
            st.error(f"Could not load the pair: {exc}", icon=":material/error:")
        return None
    if pair is None and not quiet:
        st.info("Choose a pair in the sidebar to begin.")
    if pair is not None and pair.dataset is None and not quiet:
        st.warning(
            "This pair has no data to evaluate on: choose a dataset in the sidebar's form.",
            icon=":material/folder_open:",
        )
        return None
    return pair


def device() -> str:
    dev = st.session_state.get("device", "cpu")
    return dev if dev == "cpu" or torch.cuda.is_available() else "cpu"


def probe_size() -> int:
    return int(st.session_state.get("probe_size", 512))


def probe(pair: Pair, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The first n test inputs, their targets and (generated images only) masks; views, never copies."""
    split = pair.dataset.split("test")
    n = min(n, len(split))
    masks = split.masks[:n] if getattr(split, "masks", None) is not None else None
    return split.inputs[:n], split.targets[:n], masks


def sample_name(key: tuple) -> str | None:
    """The sample pair behind a key (a sample pair, or a run of one), else None."""
    if key[0] == "sample":
        return key[1]
    if key[0] == "run" and key[1]:
        try:
            return store().get_run(key[1])["pair"]
        except Exception:  # noqa: BLE001 — a deleted run: no sample pair
            return None
    return None
