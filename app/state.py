"""Which pair the sidebar chose, loaded once and shared read-only by every session.

Pairs are `st.cache_resource`: one object for all sessions, so nothing here or in the pages may
mutate a model (adapters run in scoped eval contexts; training clones). Uploaded files are stored
under $KDWB_HOME/uploads by content hash, so a re-upload costs nothing and a session never sees
another's half-written file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch

import sample_models
from app import safety, workshop_server
from app.runs import own_pair_label
from kdcore.adapters.hf_files import check_kind
from kdcore.data import DATASETS
from kdcore.data._user_common import LOCAL_MAX_BYTES
from kdcore.data.sources import DataSource
from kdcore.jobs.config import JobConfig
from kdcore.jobs.own_source import OwnPairSource
from kdcore.jobs.pair_source import pair_for_config, student_for_run
from kdcore.jobs.store import RunStore, default_home
from kdcore.jobs.workspace import WorkspaceError
from kdcore.pairs import Pair
from kdcore.weights import apply_state_dict

UPLOAD_LIMIT_MB = 50  # largest dataset or weights file read from an upload (also .streamlit/config.toml)
OPTIONAL_WEIGHTS_HELP = (
    "Optional: leave empty to start from the teacher's blocks or fresh weights on the Distill page (the "
    "analysis pages then show the untrained student)."
)
UNTRAINED_NOTE = "The student is untrained (no weights file): its factory's own initialisation. Train it on Distill."
UNZIP_LIMIT = 200 * 2**20  # largest total size an uploaded image-folder zip may expand to
DATA_CHOICES = (
    "A built-in dataset",
    "A table (.csv, .tsv, .parquet)",
    "Text (.txt, .jsonl, .csv)",
    "Images (folder or .zip of class folders)",
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
    """The run store in $KDWB_HOME (every call opens its own connections: safe across sessions). On a
    workshop server, this session's workspace of it: only the participant's runs, under their queue limit."""
    if not workshop_server.enabled():
        return RunStore()
    name = st.session_state.get(workshop_server.PARTICIPANT_KEY)
    if name is None:
        raise WorkspaceError("This is a workshop server: enter your workspace name first (the form on any page).")
    return RunStore(workspace=name, max_active=workshop_server.settings().max_queued)


def finished_runs() -> dict[str, str]:
    """Completed runs: id -> a readable label."""
    df = store().list_runs(state="completed")
    return {r.id: f"{r.id} · {r.pair} · {r.objective}" + (f" · {r.name}" if r.name else "") for r in df.itertuples()}


@st.cache_resource(show_spinner="Loading the run's student…", max_entries=8)
def _run_pair(run_id: str, epoch: int | None = None) -> Pair:
    """The pair a run distilled, with the run's student (final weights, or those of a checkpoint epoch).

    Any pair: a sample pair (its cached copy), a registered or module:factory pair, or a user's own
    Hugging Face directories or factories (kdcore.jobs.pair_source.pair_for_config and student_for_run)."""
    run = store().get_run(run_id)
    weights = store().load_student(run_id, epoch=epoch)
    label = f"{run['pair']} · run {run_id}" + (f" · epoch {epoch}" if epoch is not None else "")
    if run["pair"] in sample_models.PAIRS and not run["config"].get("teacher"):
        base = _sample_pair(run["pair"])
        student = base.student.clone()  # never touch the shared, cached student
        apply_state_dict(student.model, weights)
        student.model.eval()
        return Pair(
            name=label,
            teacher=base.teacher,
            student=student,
            student_baseline=base.student_baseline,
            dataset=base.dataset,
        )
    safety.check_run_factories(run["config"])  # a module:factory run imports its factories here
    config = JobConfig.from_dict(run["config"])
    base = pair_for_config(config)  # the teacher and data as the run had them; its models are not changed
    return Pair(name=label, teacher=base.teacher, student=student_for_run(config, weights), dataset=base.dataset)


# ---- the user's own models and data ----------------------------------------------------------------
# Local files and directories are NAMED (a path typed in the sidebar): read where they lie, no upload and
# no upload cap. Uploads remain for small files and are stored by content hash.
LOCAL_DATA_LIMIT = LOCAL_MAX_BYTES  # largest local data file read when named by its path (4 GiB, as jobs)
TEXT_FIELD_DEFAULT = "text"
CONTEXT_DEFAULT = 128


def _save_upload(upload, suffix: str | None = None) -> Path:
    """Store an uploaded file by content hash (size-checked); return its path."""
    data = upload.getvalue()
    if len(data) > UPLOAD_LIMIT_MB * 2**20:
        raise ValueError(
            f"The file {upload.name!r} is {len(data) / 2**20:.1f} MB; the upload limit is {UPLOAD_LIMIT_MB} MB. "
            f"Name its path on this machine instead (no limit applies to local files)."
        )
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = default_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{suffix or Path(upload.name).suffix.lower()}"
    if not path.exists():
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _local_path(text: str, what: str, *, directory_ok: bool = True) -> Path:
    """A path typed in the sidebar, made absolute (~ expanded); refused in plain words when nothing is there."""
    path = Path(text.strip()).expanduser().resolve()
    if not path.exists():
        raise ValueError(f"The {what} {text.strip()!r} does not exist on this machine. Check the path.")
    if path.is_dir() and not directory_ok:
        raise ValueError(f"The {what} {text.strip()!r} is a folder; name a file.")
    return path


@st.cache_resource(show_spinner="Loading your models…", max_entries=4)
def _own_pair(spec: OwnPairSource) -> Pair:
    if spec.mode == "factory":
        safety.check_factory(spec.teacher)  # every path to load_factory is checked
        safety.check_factory(spec.student)
    return spec.load()


def marks_position_kinds(pair: Pair) -> bool:
    """Whether the pair's data marks copy and local positions (tinylang): the pages' texts about induction
    heads and the copy/local split apply to it, not to a user's own language models."""
    return pair.dataset.split("test").extras.get("position_kind") is not None


def own_models_form(sb) -> None:
    """Sidebar form for the user's own teacher, student and data; stores a load spec on submit."""
    # outside the form: a form reruns only on submit, and the fields below depend on the format
    mode = sb.radio("Format", ["Hugging Face directories", "module:factory + safetensors"], key="own_mode")
    with sb.form("own_models"):
        kind = st.selectbox(
            "Kind",
            ["classifier", "causal_lm", "encoder"],
            key="own_kind",
            help="Image/table classifiers and Hugging Face sequence classifiers (text with a label column), causal "
            "language models, or encoders (a BertModel-like AutoModel: sentences in, pooled embeddings out).",
        )
        tw = sw = None
        if mode.startswith("Hugging"):
            t = st.text_input(
                "Teacher directory",
                key="own_teacher_dir",
                placeholder="/path/to/teacher",
                help="A folder on this machine made by save_pretrained (config.json, weights, tokenizer). "
                "Read where it lies: no upload, no size limit.",
            )
            s = st.text_input("Student directory", key="own_student_dir", placeholder="/path/to/student")
        else:
            t = st.text_input("Teacher factory", key="own_teacher_factory", placeholder="mypkg.models:make_teacher")
            tw = _weights_field("Teacher", "own_teacher_w")
            s = st.text_input("Student factory", key="own_student_factory", placeholder="mypkg.models:make_student")
            sw = _weights_field("Student", "own_student_w", optional=True)
            st.caption(safety.module_loading_note())
        data_choice = st.selectbox(
            "Data",
            DATA_CHOICES,
            key="own_data_choice",
            help=f"Name a file on this machine (no size limit), or upload one up to {UPLOAD_LIMIT_MB} MB. "
            "Nothing leaves this machine.",
        )
        builtin = st.selectbox("Built-in dataset", list(DATASETS), key="own_dataset")
        data_path = st.text_input(
            "Data file or folder on this machine",
            key="own_data_path",
            placeholder="/path/to/corpus.txt",
            help="A table, a text file (.txt, .jsonl, .csv) or a folder (or .zip) of class folders. "
            "When filled, it is used instead of an upload.",
        )
        upload = st.file_uploader(
            "…or upload a small data file",
            type=["csv", "tsv", "parquet", "txt", "jsonl", "zip"],
            key="own_data_file",
        )
        option = st.text_input(
            "Label column (tables; a sequence classifier's labelled text) or tokenizer 'char'/'word' (text for "
            "models without their own tokenizer)",
            key="own_data_option",
            value="label",
        )
        c1, c2 = st.columns(2)
        context = c1.number_input(
            "Context length",
            1,
            1 << 20,
            CONTEXT_DEFAULT,
            key="own_context_length",
            help="Tokens per row when a Hugging Face language model's own tokenizer reads the text "
            "(at most the model's max_position_embeddings).",
        )
        field = c2.text_input(
            "Text field",
            TEXT_FIELD_DEFAULT,
            key="own_text_field",
            help="The JSONL key or CSV column holding the text (Hugging Face language models).",
        )
        if st.form_submit_button("Load pair"):
            try:
                st.session_state["own_spec"] = OwnPairForm(
                    mode, kind, t, s, tw, sw, data_choice, builtin, upload, option, data_path, int(context), field
                ).spec()
                st.session_state.pop("own_error", None)
            except ValueError as exc:
                st.session_state["own_error"] = str(exc)


def _weights_field(who: str, key: str, *, optional: bool = False) -> tuple[str, object]:
    """A weights file named by its path on this machine, or uploaded: (path text, upload or None)."""
    path = st.text_input(
        f"{who} weights on this machine (.safetensors, .pt)" + (" (optional)" if optional else ""),
        key=f"{key}_path",
        placeholder=f"/path/to/{who.lower()}.safetensors",
        help="Read where it lies: no upload, no size limit." + (f" {OPTIONAL_WEIGHTS_HELP}" if optional else ""),
    )
    upload = st.file_uploader(f"…or upload {who.lower()} weights (.safetensors)", type=["safetensors"], key=key)
    return (path or "", upload)


def _weights_path(field, who: str, *, optional: bool = False) -> str:
    """The path of a weights field: a named local file, else the stored upload; refused when neither
    (an optional field gives "": the student starts from the teacher's blocks or fresh weights)."""
    path_text, upload = field if isinstance(field, tuple) else ("", field)
    if path_text.strip():
        return str(_local_path(path_text, f"{who} weights file", directory_ok=False))
    if upload is None and optional:
        return ""
    if upload is None:
        raise ValueError(
            f"Upload a .safetensors file for the {who}, or name its weights file on this machine (the {who}'s "
            f"is missing)."
        )
    return str(_save_upload(upload))


@dataclass(frozen=True)
class OwnPairForm:
    """The own-pair form's values: the models (Hugging Face directories, or module:factory names with their
    weights fields) and the data (a built-in dataset, a local path or an upload, and its option)."""

    mode: str
    kind: str
    t: str | None  # teacher directory or factory
    s: str | None  # student directory or factory
    tw: object  # teacher weights field, factories only: (path text, upload) or an upload
    sw: object
    data_choice: str
    builtin: str
    upload: object  # an uploaded data file or None
    option: str | None  # label column or tokenizer
    data_path: str  # a data file or folder on this machine ("" for none)
    context_length: int
    text_field: str

    def spec(self) -> OwnPairSource:
        """The load spec of the user's pair (uploads stored by content hash, local paths made absolute), or
        ValueError."""
        t, s, kind = (self.t or "").strip(), (self.s or "").strip(), self.kind
        if not t or not s:
            raise ValueError(
                "Fill in both the teacher and the student (or make a shallower student from a Hugging Face "
                "teacher in the box below the form)."
            )
        if not self.mode.startswith("Hugging"):
            safety.check_factory(t)  # before anything is imported or stored
            safety.check_factory(s)
            data = self._data(None, kind)
            tw, sw = _weights_path(self.tw, "teacher"), _weights_path(self.sw, "student", optional=True)
            return OwnPairSource("factory", t, s, data, kind, tw, sw)
        hf_kind = "sequence_classification" if kind == "classifier" else kind
        models = (str(Path(t).expanduser()), str(Path(s).expanduser()))
        check_kind(models[0], kind)
        return OwnPairSource("hf", *models, self._data(models, hf_kind), hf_kind)

    def _data(self, models: tuple[str, str] | None, kind: str) -> DataSource:
        """The data part of the load spec: its format, path or name, options and the bytes read at most."""
        if self.data_choice == DATA_CHOICES[0]:
            return DataSource("builtin", self.builtin)
        if (self.data_path or "").strip():
            path, limit = _local_path(self.data_path, "data file"), LOCAL_DATA_LIMIT
        elif self.upload is None:
            raise ValueError("Name a data file on this machine, upload one, or pick a built-in dataset.")
        else:
            path, limit = _save_upload(self.upload), UPLOAD_LIMIT_MB * 2**20
        option = (self.option or "").strip()
        if self.data_choice == DATA_CHOICES[1]:
            return DataSource("table", str(path), label_field=option or "label", max_bytes=limit)
        if self.data_choice == DATA_CHOICES[2]:
            return self._text(str(path), option, limit, models, kind)
        return DataSource("images", str(path), max_bytes=limit, unzip_max_bytes=UNZIP_LIMIT)

    def _text(self, path: str, option: str, limit: int, models: tuple[str, str] | None, kind: str) -> DataSource:
        """Text: read by the pair's own tokenizer (Hugging Face models: a causal LM's rows, an encoder's or a
        sequence classifier's sentences), else by char or word tokens (`option`)."""
        if models is None:
            return DataSource("text", path, tokenizer=option if option in ("char", "word") else "char", max_bytes=limit)
        return DataSource(
            "hf_text" if kind == "causal_lm" else "hf_sentences",
            path,
            label_field=(option or "label") if kind == "sequence_classification" else None,
            teacher_dir=models[0],
            student_dir=models[1],
            context_length=int(self.context_length),
            text_field=(self.text_field or "").strip() or TEXT_FIELD_DEFAULT,
            max_bytes=limit,
        )


def _own_spec(
    mode,
    kind,
    t,
    s,
    tw,
    sw,
    data_choice,
    builtin,
    upload,
    option,
    *,
    data_path: str = "",
    context_length: int = CONTEXT_DEFAULT,
    text_field: str = TEXT_FIELD_DEFAULT,
) -> OwnPairSource:
    """The load spec of the user's pair from the form's values (OwnPairForm.spec), or ValueError."""
    return OwnPairForm(
        mode, kind, t, s, tw, sw, data_choice, builtin, upload, option, data_path, context_length, text_field
    ).spec()


def own_job_pair() -> tuple[OwnPairSource | None, Pair | None]:
    """(load spec, pair) of the sidebar's own pair (Hugging Face directories or module:factory) when one was
    loaded and loads; else (None, None)."""
    spec = st.session_state.get("own_spec")
    if not isinstance(spec, OwnPairSource):
        return None, None
    try:
        return spec, _own_pair(spec)
    except Exception:  # noqa: BLE001 — the sidebar shows why; the Distill page just does not offer it
        return None, None


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
        store().get_run(value)  # a workshop participant's own run only (the cached pair is shared)
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


def untrained_student(key: tuple) -> bool:
    """Whether the choice is the sidebar's module:factory pair loaded without a student weights file."""
    spec = key[1] if key[0] == "own" else None
    return isinstance(spec, OwnPairSource) and spec.untrained_student


def pair_label(key: tuple) -> str | None:
    """The pair name the run store lists runs of this choice under: a sample pair's name, a run's pair, or
    "hf:teacher→student" for the sidebar's own Hugging Face pair; None when there is none."""
    if key[0] == "own":
        return own_pair_label(key[1])
    return sample_name(key)
