"""The distillation job's configuration: a dataclass that validates itself and round-trips
through JSON and YAML.

Construction stores values untouched; `validate()` lists every problem at once (scikit-learn's
convention: check where work starts). `JobConfig.from_dict` rejects unknown keys by name.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kdcore.jobs.factory_config import factory_label, factory_problems, option_key_problems, uses_factories
from kdcore.jobs.perf_options import option_problems
from kdcore.jobs.schedules import schedule_problems
from kdcore.methods import (
    ALIASES,  # noqa: F401  (re-exported: {alias: method}, always current)
    canonical_name,
    get_method,
    method_names,
    param_problems,
    resolve_params,
    unknown_method_message,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "linear")
DEVICES = ("cpu", "cuda", "auto")
# A user's own Hugging Face pair (JobConfig.teacher/student/data): the model kinds, student inits, layer rules
# and data options (the keyword names of kdcore.data.load_hf_text) a config may name.
MODEL_KINDS = ["causal_lm", "sequence_classification", "encoder"]  # a list: other model kinds register themselves here
HELDOUT_PROMPTS = 64  # causal LMs: held-out prompts decoded at each evaluation (kdcore.jobs.heldout)
STUDENT_INITS = ("reinit", "pretrained", "from_teacher")  # "" in a config: the default (see JobConfig)
LAYER_RULES = ("spread", "stride", "first")  # kdcore.adapters.layer_subset_indices
DATA_OPTIONS = (
    "format",
    "text_field",
    "context_length",
    "mode",
    "val_fraction",
    "test_fraction",
    "label_field",
    "unit",
)
# (label_field and unit: sentence data of encoders and sequence classifiers, kdcore.data.load_hf_sentences)
SEED_MAX = 2**63 - 1  # the largest integer SQLite stores


def __getattr__(name: str) -> Any:
    """OBJECTIVES, read from the method table when asked (so methods registered later are in it)."""
    if name == "OBJECTIVES":
        return method_names() + ("sum",)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ConfigError(ValueError):
    """A job configuration with one or more problems; `.problems` lists them all."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"The job configuration has {len(self.problems)} problem(s):\n{lines}")


@dataclass
class LossTerm:
    """One term of a weighted-sum objective."""

    name: str = "kd"  # a method of the table (kdcore.methods) or an alias
    weight: float = 1.0  # multiplier of this term in the sum
    params: dict = field(default_factory=dict)  # the method's parameters (`python -m kdcore methods`)


@dataclass
class JobConfig:
    """Everything a distillation job needs; the run store keeps it whole, so a run can be re-run.

    The loss is `sum_i weight_i * term_i + ce_weight * CE(labels)`. A single objective is the
    shorthand for one term of weight 1 with `params`; `objective="sum"` uses `terms`.
    """

    pair: str = "digits"  # sample pair name, or "module:factory" returning a Pair
    objective: str = "kd"  # a method of the table or an alias ("sum": the weighted `terms`)
    temperature: float | None = None  # T of every method that takes one; None: each method's default
    lam: float | None = None  # KD's weight λ in [0, 1] (CE gets 1 − λ); None: 0.9
    ce_weight: float | None = None  # hard-label CE added to the loss; None: the method's CE default
    params: dict = field(default_factory=dict)  # the method's parameters (`python -m kdcore methods`)
    terms: list = field(default_factory=list)  # objective="sum": LossTerm entries (or dicts)
    schedules: dict = field(default_factory=dict)  # target -> schedule spec (kdcore.jobs.schedules)
    train_size: int | None = None  # first n training samples; None: the whole split
    val_size: int | None = 512  # first n validation samples; None: the whole split
    optimizer: str = "adam"  # "adam" | "adamw" | "sgd"
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled for adamw, L2 for adam/sgd
    momentum: float = 0.9  # sgd only
    schedule: str = "constant"  # "constant" | "cosine" | "step" | "linear" (decay to 0)
    warmup_steps: int = 0  # linear warm-up from 0 over these steps
    epochs: int = 5  # passes over the training subset
    max_steps: int | None = None  # stop after this many steps (None: epochs decide)
    batch_size: int = 64  # samples per step
    seed: int = 0  # student init, shuffling, dropout
    device: str = "cpu"  # "cpu" | "cuda" | "auto" (cuda when present)
    checkpoints: int = 3  # epochs with CKA/divergence probes and saved weights (last included)
    probe_size: int = 256  # validation samples used at checkpoints
    heldout_prompts: int = HELDOUT_PROMPTS  # causal LMs: held-out prompts greedily decoded at every evaluation (0: off)
    teacher_cache: bool = False  # compute teacher outputs once per dataset and reuse them
    cache_top_k: int | None = None  # keep the top-k teacher logits per position (large vocabularies)
    grad_clip: float | None = None  # max gradient norm (None: no clipping)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; float32 weights and loss arithmetic)
    grad_accum: int = 1  # micro-batches per optimizer step (each batch split into this many)
    grad_checkpointing: bool = False  # Hugging Face students: recompute activations in backward
    attn_implementation: str = "auto"  # "auto" (sdpa unless attentions are needed) | "eager" | "sdpa"
    lm_chunked: bool = True  # causal-LM token objectives from hidden states, chunk by chunk
    shard: str = "none"  # "none" | "full": FSDP over the processes of a --devices/torchrun job (HF students)
    name: str = ""  # free label shown in run lists
    # a user's own Hugging Face pair (used instead of `pair` when `teacher` is set; see kdcore.jobs.pair_source)
    teacher: str = ""  # the teacher's Hugging Face model directory (or a .gguf file)
    student: str = ""  # the student's directory; "" only with student_init="from_teacher"
    data: str = ""  # a text/JSONL/CSV file, tokenised by the teacher's tokenizer (kdcore.data.load_hf_text)
    data_options: dict = field(default_factory=dict)  # load_hf_text options: format, text_field, context_length, ...
    model_kind: str = "causal_lm"  # how the directories load: "causal_lm" | "sequence_classification" | "encoder"
    student_init: str = ""  # "reinit" | "pretrained" | "from_teacher"; "": reinit (registered pair), pretrained (dirs)
    # from_teacher: a registered pair's student architecture takes the teacher's blocks (kdcore.jobs.student_init)
    student_layers: int | None = None  # from_teacher with `teacher`: the student's number of layers (< the teacher's)
    layer_rule: str = "spread"  # from_teacher: which teacher layers ("spread" | "stride" | "first")
    # a user's own module:factory pair (instead of `pair` and `teacher`; see kdcore.jobs.factory_config):
    # `data` is then a table, text file, image folder/.zip or built-in dataset name; model_kind "classifier"/"causal_lm"
    teacher_factory: str = ""  # "package.module:factory" building the teacher
    teacher_weights: str = ""  # the teacher's .safetensors (or .pt) state dict
    student_factory: str = ""  # "package.module:factory" building the student
    student_weights: str = ""  # the student's .safetensors (or .pt) state dict; "" with reinit/from_teacher

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["terms"] = [asdict(t) if isinstance(t, LossTerm) else dict(t) for t in self.terms]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> JobConfig:
        if not isinstance(data, dict):
            raise ConfigError(
                [f"a job configuration must be a mapping of field names to values; got {type(data).__name__}"]
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError([f"unknown field '{k}' (known fields: {', '.join(sorted(known))})" for k in unknown])
        data = dict(data)
        if isinstance(data.get("terms"), list):
            data["terms"] = [
                LossTerm(**t) if isinstance(t, dict) and set(t) <= {"name", "weight", "params"} else t
                for t in data["terms"]
            ]
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobConfig:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> JobConfig:
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    @classmethod
    def load(cls, path: str | Path) -> JobConfig:
        """Read a .json, .yaml or .yml file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"The config file {str(path)!r} does not exist.")
        suffix = path.suffix.lower()
        if suffix not in (".yaml", ".yml", ".json"):
            raise ValueError(f"The config file must end in .json, .yaml or .yml. Got {path.name!r} instead.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"The config file {str(path)!r} cannot be read: {exc}") from None
        data = _parse_config_text(path, text, yaml_file=suffix != ".json")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError([f"{path}: {p}" for p in exc.problems]) from None

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.write_text(self.to_yaml() if path.suffix.lower() in (".yaml", ".yml") else self.to_json())

    # ---- resolved view -------------------------------------------------------------------------
    def resolved_terms(self) -> list[LossTerm]:
        """The terms of the loss, with every default filled in (call after validate())."""
        raw = (
            [LossTerm(self.objective, 1.0, dict(self.params))]
            if self.objective != "sum"
            else [t if isinstance(t, LossTerm) else LossTerm(**t) for t in self.terms]
        )
        shared = {"temperature": self.temperature, "lam": self.lam}
        out = []
        for t in raw:
            method = get_method(t.name)
            out.append(LossTerm(method.name, float(t.weight), resolve_params(method, t.params, shared)))
        return out

    def resolved_ce_weight(self) -> float:
        if self.ce_weight is not None:
            return float(self.ce_weight)
        name = canonical_name(self.objective)
        return 1.0 if name is not None and get_method(name).ce_default else 0.0

    # ---- validation ----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every problem with this configuration, in plain English (empty when valid)."""
        return self._objective_problems() + self._training_problems() + self._source_problems() + option_problems(self)

    def _objective_problems(self) -> list[str]:
        """Problems with the pair, the objective, its parameters and its terms."""
        p: list[str] = []
        if (not isinstance(self.pair, str) or not self.pair) and not is_own_pair(self):
            p.append(f"'pair' must be a sample pair name or 'module:factory'; got {self.pair!r}")
        obj = "sum" if self.objective == "sum" else canonical_name(self.objective)
        if obj is None:
            p.append(f"'objective': {unknown_method_message(self.objective)} Or 'sum' for a weighted sum of 'terms'.")
        _opt_float(p, "temperature", self.temperature, lo=0.0, lo_open=True)
        _opt_float(p, "lam", self.lam, lo=0.0, hi=1.0)
        _opt_float(p, "ce_weight", self.ce_weight, lo=0.0)
        if not isinstance(self.params, dict):
            p.append(f"'params' must be a mapping; got {type(self.params).__name__}")
        elif obj not in (None, "sum"):
            p += param_problems(get_method(obj), self.params, "params")
        if not isinstance(self.terms, list):
            p.append(f"'terms' must be a list; got {type(self.terms).__name__}")
        elif obj == "sum":
            if not self.terms:
                p.append("objective 'sum' needs at least one entry in 'terms' (e.g. {name: kd, weight: 1.0})")
            for i, t in enumerate(self.terms):
                p += _loss_term_problems(i, t)
        elif self.terms:
            p.append(
                f"'terms' is only used with objective 'sum'; got {len(self.terms)} term(s) with objective {self.objective!r}"
            )
        if obj == "sum" and self.params:
            p.append("objective 'sum' takes its parameters inside each term's 'params', not in 'params'")
        return p + self._schedule_problems(obj)

    def _schedule_problems(self, obj: str | None) -> list[str]:
        """Problems with `schedules` (unknown target or kind, values outside the target's range)."""
        if obj == "sum" and isinstance(self.terms, list):
            raw = [
                t.name if isinstance(t, LossTerm) else t.get("name") if isinstance(t, dict) else None
                for t in self.terms
            ]
            names = [n for n in (canonical_name(r) for r in raw) if n is not None]
        else:
            names = [obj] if obj is not None else []
        return schedule_problems(self.schedules, names)

    def _training_problems(self) -> list[str]:
        """Problems with the data sizes, optimizer, schedule, device, checkpoints, cache and name."""
        p: list[str] = []
        _opt_int(p, "train_size", self.train_size, lo=1)
        _opt_int(p, "val_size", self.val_size, lo=1)
        if self.optimizer not in OPTIMIZERS:
            p.append(f"'optimizer' must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        _opt_float(p, "lr", self.lr, lo=0.0, lo_open=True, required=True)
        _opt_float(p, "weight_decay", self.weight_decay, lo=0.0, required=True)
        _opt_float(p, "momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True, required=True)
        if self.schedule not in SCHEDULES:
            p.append(f"'schedule' must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        _opt_int(p, "warmup_steps", self.warmup_steps, lo=0, required=True)
        _opt_int(p, "epochs", self.epochs, lo=1, required=True)
        _opt_int(p, "max_steps", self.max_steps, lo=1)
        _opt_int(p, "batch_size", self.batch_size, lo=1, required=True)
        _opt_int(p, "seed", self.seed, lo=0, hi=SEED_MAX, required=True)  # in [0, 2**63 - 1]
        if self.device not in DEVICES:
            p.append(f"'device' must be one of {', '.join(DEVICES)}; got {self.device!r}")
        _opt_int(p, "checkpoints", self.checkpoints, lo=0, required=True)
        _opt_int(p, "probe_size", self.probe_size, lo=4, required=True)
        _opt_int(p, "heldout_prompts", self.heldout_prompts, lo=0, required=True)
        if not isinstance(self.teacher_cache, bool):
            p.append(f"'teacher_cache' must be true or false; got {self.teacher_cache!r}")
        _opt_int(p, "cache_top_k", self.cache_top_k, lo=1)
        if self.cache_top_k is not None and self.teacher_cache is False:
            p.append("'cache_top_k' needs 'teacher_cache: true'")
        _opt_float(p, "grad_clip", self.grad_clip, lo=0.0, lo_open=True)
        if not isinstance(self.name, str):
            p.append(f"'name' must be a string; got {self.name!r}")
        return p

    def _source_problems(self) -> list[str]:
        """Problems with a user's own pair: teacher, student, data, data_options, model_kind, student init."""
        p = [
            f"'{k}' must be a string (a path); got {getattr(self, k)!r}"
            for k in ("teacher", "student", "data")
            if not isinstance(getattr(self, k), str)
        ]
        if p:
            return p
        if self.student_init not in ("", *STUDENT_INITS):
            p.append(
                f"'student_init' must be one of {', '.join(STUDENT_INITS)} (or empty: the default); got {self.student_init!r}"
            )
        if uses_factories(self):  # a module:factory pair: its own kinds and data
            return p + _layer_problems(self) + factory_problems(self)
        if self.model_kind not in MODEL_KINDS:
            p.append(f"'model_kind' must be one of {', '.join(MODEL_KINDS)}; got {self.model_kind!r}")
        p += _data_option_problems(self.data_options)
        if self.model_kind == "causal_lm" and isinstance(self.data_options, dict):
            extra = sorted(k for k in ("label_field", "unit") if k in self.data_options)
            if extra:
                p.append(
                    f"data_options {extra} apply to sentence data (model_kind 'encoder' or 'sequence_classification'); "
                    f"a causal LM reads text as next-token rows: remove them, or set model_kind"
                )
        p += _layer_problems(self)
        if not self.teacher:
            used = [k for k in ("student", "data") if getattr(self, k)]
            if used:
                p.append(
                    f"{' and '.join(repr(k) for k in used)} need 'teacher' (the teacher's model directory) or "
                    f"'teacher_factory' and 'student_factory' (a module:factory pair)"
                )
            return p
        return p + _path_problems(self)

    def validate(self) -> JobConfig:
        """Raise ConfigError listing every problem; return self when valid."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self


def is_own_pair(config: JobConfig) -> bool:
    """Whether the config names a user's own pair (Hugging Face directories or module:factory) instead of `pair`."""
    return bool(config.teacher) or uses_factories(config)


def resolved_student_init(config: JobConfig) -> str:
    """The student init a config runs with: its own, else "pretrained" for a user's own pair (model
    directories or module:factory weights) and "reinit" for registered pairs."""
    if config.student_init:
        return config.student_init
    return "pretrained" if is_own_pair(config) else "reinit"


def source_label(config: JobConfig) -> str:
    """The pair label of a config: "hf:<teacher dir>→<student dir>" for a user's own pair
    ("→<teacher dir>[N layers]" for a from_teacher student), "factory:<teacher factory>→<student factory>"
    for a module:factory pair (kdcore.jobs.factory_config.factory_label), else `config.pair`."""
    if uses_factories(config) and not config.teacher:
        return factory_label(config)
    if not config.teacher:
        return config.pair
    teacher = Path(config.teacher).name or config.teacher
    if resolved_student_init(config) == "from_teacher":
        student = f"{teacher}[{config.student_layers} layers]"
    else:
        student = Path(config.student).name or config.student
    return f"hf:{teacher}→{student}"


def with_source_label(config: JobConfig) -> JobConfig:
    """The config with `pair` set to its display label (`source_label`) for a user's own pair."""
    from dataclasses import replace

    if not isinstance(config.teacher, str) or not is_own_pair(config):
        return config
    label = source_label(config)
    return config if config.pair == label else replace(config, pair=label)


# ---- private checks --------------------------------------------------------------------------------


def _data_option_problems(options: Any) -> list[str]:
    p = option_key_problems(options, DATA_OPTIONS)
    if not isinstance(options, dict):
        return p
    if "context_length" in options:
        _opt_int(p, "data_options.context_length", options["context_length"], lo=1, required=True)
    if options.get("format", "auto") not in ("auto", "text", "jsonl", "csv"):
        p.append(f"'data_options.format' must be one of auto, text, jsonl, csv; got {options['format']!r}")
    if options.get("mode", "pack") not in ("pack", "truncate"):
        p.append(f"'data_options.mode' must be one of pack, truncate; got {options['mode']!r}")
    for k in ("val_fraction", "test_fraction"):
        if k in options:
            _opt_float(p, f"data_options.{k}", options[k], lo=0.0, hi=1.0, lo_open=True, hi_open=True, required=True)
    for k in ("text_field", "label_field"):
        if k in options and (not isinstance(options[k], str) or not options[k]):
            p.append(f"'data_options.{k}' must be a non-empty string; got {options[k]!r}")
    if options.get("unit", "line") not in ("line", "paragraph"):
        p.append(f"'data_options.unit' must be one of line, paragraph; got {options['unit']!r}")
    return p


def _layer_problems(config: JobConfig) -> list[str]:
    p: list[str] = []
    from_teacher = config.student_init == "from_teacher"
    if from_teacher and config.teacher and config.student_layers is None:
        p.append("student_init 'from_teacher' needs 'student_layers' (the student's number of layers)")
    if from_teacher and not config.teacher and config.student_layers is not None:
        p.append(
            f"'student_layers' applies to a Hugging Face teacher directory ('teacher'); the from_teacher "
            f"student of pair {config.pair!r} keeps its own architecture's depth: remove student_layers"
        )
    _opt_int(p, "student_layers", config.student_layers, lo=1)
    if config.student_layers is not None and not from_teacher:
        p.append("'student_layers' is only used with student_init 'from_teacher'")
    if config.layer_rule not in LAYER_RULES:
        p.append(f"'layer_rule' must be one of {', '.join(LAYER_RULES)}; got {config.layer_rule!r}")
    return p


def _path_problems(config: JobConfig) -> list[str]:
    """With `teacher` set: the paths exist, `student` is set unless from_teacher, `data` is set."""
    p: list[str] = []
    if not Path(config.teacher).expanduser().exists():
        p.append(f"'teacher': {config.teacher!r} does not exist (give a Hugging Face model directory)")
    if config.student_init == "from_teacher":
        if config.student:
            p.append(
                "'student' must be empty with student_init 'from_teacher' (the student is built from the "
                f"teacher's layers); got {config.student!r}"
            )
    elif not config.student:
        p.append("'student' is empty: give the student's model directory, or student_init 'from_teacher'")
    elif not Path(config.student).expanduser().exists():
        p.append(f"'student': {config.student!r} does not exist (give a Hugging Face model directory)")
    if not config.data:
        p.append("'data' is empty: give a text, JSONL or CSV file for the pair to train and validate on")
    elif not Path(config.data).expanduser().is_file():
        p.append(f"'data': {config.data!r} is not a file (give a text, JSONL or CSV file)")
    return p


def _parse_config_text(path: Path, text: str, *, yaml_file: bool) -> Any:
    """The file's YAML or JSON value; a syntax error becomes a ConfigError naming file, line and column."""
    if not yaml_file:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError([f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"]) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{path}{where}: not valid YAML ({what})"]) from None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _opt_float(
    p: list,
    name: str,
    v: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    required: bool = False,
) -> None:
    if v is None and not required:
        return
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")
    rng = f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"
    ok = _is_num(v)
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        p.append(f"'{name}' must be a number in {rng}; got {v!r}")


def _opt_int(p: list, name: str, v: Any, *, lo: int, hi: int | None = None, required: bool = False) -> None:
    """Integers are also bounded by what the run store keeps (64-bit): `hi` defaults to SEED_MAX."""
    if v is None and not required:
        return
    top = hi if hi is not None else SEED_MAX
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > top:
        too_big = hi is not None or (isinstance(v, int) and v > top)
        rng = f"in [{lo}, {top}] (the run store keeps 64-bit integers)" if too_big else f">= {lo}"
        p.append(f"'{name}' must be an integer {rng}; got {v!r}")


def _loss_term_problems(i: int, t: Any) -> list[str]:
    where = f"terms[{i}]"
    if isinstance(t, dict):
        extra = set(t) - {"name", "weight", "params"}
        if extra:
            return [f"{where} has unknown key(s) {sorted(extra)} (a term has name, weight, params)"]
        t = LossTerm(**t)
    if not isinstance(t, LossTerm):
        return [f"{where} must be a mapping {{name, weight, params}}; got {t!r}"]
    name = canonical_name(t.name)
    p: list[str] = []
    if name is None:
        return [f"{where}.name: {unknown_method_message(t.name)}"]
    _opt_float(p, f"{where}.weight", t.weight, lo=0.0, required=True)
    return p + param_problems(get_method(name), t.params, f"{where}.params")
