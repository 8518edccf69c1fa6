"""Where a job's pair comes from: a registered pair by name, a user's own Hugging Face directories, or a
user's own module:factory pair (kdcore.jobs.factory_source).

    pair = pair_for_config(JobConfig(teacher="runs/teacher", student="runs/student", data="corpus.txt"))
    student = student_for_run(config, store.load_student(run_id))  # any run's student, reopened

With `config.teacher` set, the pair is the teacher's directory (loaded by kdcore.adapters.load_hf), the
student's directory (or, for student_init="from_teacher", the layer-subset copy of the teacher of METHODS
§14.2, written by make_student_from_teacher under a temporary directory: deterministic), and `config.data`
tokenised by the teacher's own tokenizer (kdcore.data.load_hf_text). Everything that can be checked from
the directories' config.json and tokenizer files is checked before any weights load.

Loaded models and datasets are cached by path, file sizes and modification times (kdcore.jobs.source_cache): the
teacher is never mutated (the runner trains clones), so sharing it is safe.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from kdcore.adapters.base import ModelAdapter
from kdcore.adapters.hf_files import check_has_tokenizer, check_model_dir, max_positions, read_config
from kdcore.adapters.layer_subset import layer_subset_indices
from kdcore.data._user_common import LOCAL_MAX_BYTES
from kdcore.data.base import Dataset
from kdcore.jobs.config import JobConfig, resolved_student_init, source_label
from kdcore.jobs.factory_config import uses_factories
from kdcore.jobs.resolve import resolve_pair
from kdcore.jobs.source_cache import cached, stamp
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError

_DEFAULT_CONTEXT = 128  # load_hf_text's default context length, lowered to the models' maximum


# the objective a user's own pair distils with when none is chosen, by model kind (JobConfig's "kd" fits classifiers)
OWN_PAIR_OBJECTIVES: dict[str, str] = {"causal_lm": "token", "encoder": "embed_distill"}


def own_pair_objective(model_kind: str) -> str | None:
    """The default objective of a user's own pair of this model kind (None: JobConfig's default)."""
    return OWN_PAIR_OBJECTIVES.get(model_kind)


def pair_for_config(config: JobConfig) -> Pair:
    """The Pair a job runs on: the registered pair `config.pair`, or (when `config.teacher` is set) the
    teacher's and student's Hugging Face directories with `config.data` as its dataset, or (when
    `config.teacher_factory` is set) the module:factory pair with its weights files and data
    (kdcore.jobs.factory_source).

    Raises ConfigError (the config's problems) or ValueError (a directory without a tokenizer, tokenizers
    that differ, a from_teacher student as deep as its teacher, vocabularies that differ, a context
    length above the models' maximum) before any weights load.
    """
    if uses_factories(config):  # a module:factory pair (kdcore.jobs.factory_source)
        from kdcore.jobs.factory_source import factory_pair

        return factory_pair(config.validate())
    if not config.teacher:
        return resolve_pair(config.pair)
    config.validate()
    options = checked_data_options(config)
    teacher = _load_model(Path(config.teacher).expanduser(), config.model_kind)
    student = _student_adapter(config)
    dataset = _dataset(config, options)
    return Pair(name=source_label(config), teacher=teacher, student=student, dataset=dataset)


def student_for_run(config: JobConfig | Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> ModelAdapter:
    """A new adapter of the run's student architecture holding `state_dict` (e.g. store.load_student(run_id)).

    config: the run's JobConfig, or its dict as the run store keeps it (run["config"]).
    Tied weights stay tied (the state dict's copies are loaded into the one shared parameter).
    """
    from kdcore.weights import apply_state_dict

    cfg = config if isinstance(config, JobConfig) else JobConfig.from_dict(dict(config))
    if cfg.teacher:
        checked_data_options(cfg)
        architecture = _student_adapter(cfg)
    elif uses_factories(cfg):
        from kdcore.jobs.factory_source import factory_student

        architecture = factory_student(cfg.validate())
    else:
        architecture = resolve_pair(cfg.pair).student
    student = architecture.clone(reinit=False)
    apply_state_dict(student.model, dict(state_dict))
    student.model.eval()
    return student


# ---- checks from config.json and the tokenizer files (nothing loads) --------------------------------------


def checked_data_options(config: JobConfig) -> dict[str, Any]:
    """The load_hf_text options of a config with `teacher` set, after the pair's checks (see pair_for_config);
    context_length defaults to 128, lowered to the models' max_position_embeddings."""
    teacher = Path(config.teacher).expanduser()
    if not teacher.is_dir():  # a single-file model (.gguf): its loader checks it
        return dict(config.data_options)
    check_model_dir(teacher, name="teacher", where="the job config")
    check_has_tokenizer(teacher, name="teacher", where="the job config")
    t_conf = read_config(teacher)
    limits = [max_positions(t_conf)]
    if resolved_student_init(config) == "from_teacher":
        _check_from_teacher(config, t_conf)
    else:
        s_conf = _check_student_dir(config, teacher, t_conf)
        limits.append(max_positions(s_conf))
    return _with_context_length(dict(config.data_options), [n for n in limits if n is not None])


def _check_from_teacher(config: JobConfig, t_conf: dict[str, Any]) -> None:
    n_t, n_s = t_conf.get("num_hidden_layers"), config.student_layers
    if isinstance(n_t, int) and isinstance(n_s, int):
        if n_s >= n_t:
            raise InvalidParameterError(
                f"student_init 'from_teacher' makes a shallower copy of the teacher, which has {n_t} layers; "
                f"got student_layers={n_s}. Set student_layers below {n_t} (e.g. {max(1, n_t // 2)})."
            )
        layer_subset_indices(n_t, n_s, config.layer_rule)


def _check_student_dir(config: JobConfig, teacher: Path, t_conf: dict[str, Any]) -> dict[str, Any]:
    """The student's config.json, after checking its directory, tokenizer and vocabulary against the teacher's."""
    from kdcore.data.hf_tokenizer import check_same_tokenizer

    student = Path(config.student).expanduser()
    if not student.is_dir():
        return {}
    check_model_dir(student, name="student", where="the job config")
    check_has_tokenizer(student, name="student", where="the job config")
    check_same_tokenizer(teacher, student)
    s_conf = read_config(student)
    v_t, v_s = t_conf.get("vocab_size"), s_conf.get("vocab_size")
    if config.model_kind == "causal_lm" and v_t != v_s:
        raise InvalidParameterError(
            f"The student's output layer has {v_s} tokens (vocab_size in {str(student / 'config.json')!r}) but "
            f"the teacher's has {v_t}: token-level distillation compares the two distributions token by token. "
            f"Use a student with the teacher's vocabulary (python -m kdcore make-student --from {config.teacher} "
            f"--layers N --out DIR, or student_init 'from_teacher'), or the cross-tokenizer divergence 'uld'."
        )
    return s_conf


def _with_context_length(options: dict[str, Any], limits: list[int]) -> dict[str, Any]:
    limit = min(limits) if limits else None
    if "context_length" not in options:
        options["context_length"] = min(_DEFAULT_CONTEXT, limit) if limit else _DEFAULT_CONTEXT
    elif limit is not None and isinstance(options["context_length"], int) and options["context_length"] > limit:
        raise InvalidParameterError(
            f"data_options.context_length is {options['context_length']}, above the models' "
            f"max_position_embeddings ({limit}, the smaller of teacher and student). "
            f"Use --context-length {limit} or less."
        )
    return options


# ---- loading (cached) ---------------------------------------------------------------------------------------


def _load_model(path: Path, kind: str) -> ModelAdapter:
    from kdcore.adapters.hf_load import load_hf

    return cached(("model", stamp(path), kind), lambda: load_hf(path, kind=kind))


def _student_adapter(config: JobConfig) -> ModelAdapter:
    """The student as loaded (its own weights): its directory, or the from_teacher layer-subset copy."""
    if resolved_student_init(config) != "from_teacher":
        return _load_model(Path(config.student).expanduser(), config.model_kind)
    teacher = Path(config.teacher).expanduser()
    key = ("from_teacher", stamp(teacher), config.model_kind, config.student_layers, config.layer_rule)
    return cached(key, lambda: _build_from_teacher(config, teacher))[1]


def _build_from_teacher(config: JobConfig, teacher: Path) -> tuple[tempfile.TemporaryDirectory, ModelAdapter]:
    """(the temporary directory, kept alive with the adapter; the student adapter) of a from_teacher student."""
    from kdcore.adapters.hf_load import load_hf
    from kdcore.adapters.make_student import make_student_from_teacher

    tmp = tempfile.TemporaryDirectory(prefix="kdwb-from-teacher-")
    assert config.student_layers is not None  # validated
    made = make_student_from_teacher(teacher, config.student_layers, Path(tmp.name) / "student", rule=config.layer_rule)
    name = f"{teacher.name}[{config.student_layers} layers]"
    return tmp, load_hf(made.path, kind=config.model_kind, name=name)


# the data loader of each model kind: (config, checked options) -> Dataset; other model kinds add theirs
DATA_LOADERS: dict[str, Callable[[JobConfig, dict[str, Any]], Dataset]] = {}


def _causal_lm_data(config: JobConfig, options: dict[str, Any]) -> Dataset:
    from kdcore.data.hf_text import load_hf_text
    from kdcore.data.prompts import has_prompt_fields, load_prompt_dataset
    from kdcore.jobs.sequence_data import is_sequence_objective, onpolicy_prompts

    data, mode = Path(config.data).expanduser(), onpolicy_prompts(config)
    records = mode == "records" or (mode == "auto" and has_prompt_fields(data))
    if is_sequence_objective(config.objective) or records:  # methods/15: prompt/completion records
        teacher = Path(config.teacher).expanduser()
        return load_prompt_dataset(data, teacher, seed=int(options.get("seed", 0)))

    return load_hf_text(data, Path(config.teacher).expanduser(), max_bytes=LOCAL_MAX_BYTES, **options)


def _sentence_data(config: JobConfig, options: dict[str, Any]) -> Dataset:
    """Padded sentences (kdcore.data.load_hf_sentences): a "classification" dataset with `label_field`
    (sequence classifiers need one), else an "encoder" dataset; `context_length` is its max_length."""
    from kdcore.data.hf_sentences import load_hf_sentences

    if config.model_kind == "sequence_classification" and not options.get("label_field"):
        raise InvalidParameterError(
            "model_kind 'sequence_classification' trains on labelled text, but data_options has no 'label_field'. "
            "Name the JSONL key or CSV column that holds each text's class (--label-field FIELD)."
        )
    kw = {k: v for k, v in options.items() if k not in ("context_length", "mode")}
    student = Path(config.student).expanduser() if config.student else None
    return load_hf_sentences(
        Path(config.data).expanduser(),
        Path(config.teacher).expanduser(),
        student_dir=student if student is not None and student.is_dir() else None,
        max_length=options["context_length"],
        max_bytes=LOCAL_MAX_BYTES,
        **kw,
    )


DATA_LOADERS["causal_lm"] = _causal_lm_data
DATA_LOADERS["encoder"] = _sentence_data
DATA_LOADERS["sequence_classification"] = _sentence_data


def _dataset(config: JobConfig, options: dict[str, Any]) -> Dataset:
    loader = DATA_LOADERS.get(config.model_kind)
    if loader is None:
        raise InvalidParameterError(
            f"model_kind {config.model_kind!r} has no data loader for a job's text data yet (available: "
            f"{', '.join(sorted(DATA_LOADERS))}). Distil such a pair through a registered pair (--pair) whose "
            f"dataset fits it."
        )
    key = (
        "data",
        stamp(Path(config.data)),
        stamp(Path(config.teacher)),
        config.model_kind,
        repr(sorted(options.items())),
        str(config.objective) in ("seqkd", "hybrid"),  # prompt/completion records (methods/15)
    )
    return cached(key, lambda: loader(config, options))
