"""`python -m kdcore ...`: distil, list and inspect runs, run protocols (API.md "Command line").

Exit status: 0 success; 1 the run failed or was cancelled (or `runs check` found problems); 2 bad input
(config, arguments, store, files); 130 interrupted (Ctrl-C). Every expected error is one line, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd

from kdcore.cli_values import BUDGET_FLAGS, add_budget_flags, budget_from_args, number_list
from kdcore.jobs.config import ConfigError, JobConfig, is_own_pair, with_source_label
from kdcore.jobs.factory_config import FACTORY_FIELDS, is_builtin_data
from kdcore.jobs.lease import RunBusyError
from kdcore.jobs.reporting import JobInterrupted
from kdcore.jobs.store import STATES, IntegrityError, RunStore, StoreError, sha256_bytes
from kdcore.jobs.tracking_cli import add_export_flags, add_live_flags

if TYPE_CHECKING:
    from kdcore.jobs.recipes import Recipe
    from kdcore.jobs.runner import RunResult
    from kdcore.jobs.tracking import LiveLogger

_FLAG_FIELDS = (
    "pair",
    "objective",
    "temperature",
    "lam",
    "ce_weight",
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "seed",
    "device",
    "train_size",
    "val_size",
    "name",
    "teacher",
    "student",
    "data",
    "model_kind",
    "student_init",
    "student_layers",
    "layer_rule",
    *FACTORY_FIELDS,
    "precision",
    "grad_accum",
    "heldout_prompts",
    "attn_implementation",
    "shard",
)
_BOOL_FLAG_FIELDS = ("grad_checkpointing", "lm_chunked")  # --x / --no-x
# flags that fill JobConfig.data_options (the keyword names of kdcore.data.load_hf_text)
_DATA_OPTION_FLAGS = {
    "context_length": "context_length",
    "text_field": "text_field",
    "data_format": "format",
    "data_mode": "mode",
    "label_field": "label_field",
    "sentence_unit": "unit",
    "tokenizer": "tokenizer",
}


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return _jsonable(x.item())
    return x


def _print_json(obj: Any) -> None:
    print(json.dumps(_jsonable(obj), sort_keys=False))


def _add_switch(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """--x / --no-x into args.x (None when neither is given: the config or the recipe decides)."""
    p.add_argument(
        flag, dest=flag[2:].replace("-", "_"), action=argparse.BooleanOptionalAction, default=None, help=help
    )


def _add_job_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a job config file (.yaml, .yml or .json); flags override its fields")
    p.add_argument("--pair", help="sample pair name or module:factory")
    p.add_argument("--objective", help=_objective_help())
    p.add_argument("--temperature", type=float)
    p.add_argument("--lam", type=float, help="KD's weight λ in [0, 1]")
    p.add_argument("--ce-weight", dest="ce_weight", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", dest="max_steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer")
    p.add_argument("--schedule")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--train-size", dest="train_size", type=int)
    p.add_argument("--val-size", dest="val_size", type=int)
    p.add_argument("--name")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the method, VALUE read as JSON, else as text (e.g. --param beta=8 "
        "--param rule=topk); `python -m kdcore methods` lists each method's parameters",
    )
    _add_switch(
        p,
        "--teacher-cache",
        "compute the teacher's outputs once and reuse them (the pair's recipe decides when not set)",
    )
    _add_own_pair_flags(p)
    _add_factory_pair_flags(p)
    _add_speed_flags(p)
    p.add_argument(
        "--loss-schedule",
        dest="loss_schedule",
        action="append",
        default=[],
        metavar="TARGET=KIND:START[:END[:LENGTH]][@epoch]",
        help="a schedule on the loss (repeatable; --schedule is the learning rate's): TARGET is temperature, "
        "lam, weight:<method> (that term's weight) or weight:ce; KIND is constant, linear, cosine, warmup "
        "(ramp over LENGTH, then END) or step (START until LENGTH, then END); steps unless @epoch. "
        "e.g. --loss-schedule temperature=cosine:8:2 --loss-schedule weight:dkd=warmup:0:1:20@epoch",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of progress")


def _add_own_pair_flags(p: argparse.ArgumentParser) -> None:
    """Flags of a user's own Hugging Face pair (JobConfig.teacher, student, data, ...; README "Your own models")."""
    g = p.add_argument_group("your own Hugging Face pair (instead of --pair)")
    g.add_argument("--teacher", metavar="DIR", help="the teacher's Hugging Face model directory")
    g.add_argument("--student", metavar="DIR", help="the student's directory (not with --student-init from_teacher)")
    g.add_argument("--data", metavar="PATH", help="a text, JSONL or CSV file, tokenised by the teacher's tokenizer")
    g.add_argument(
        "--student-init",
        dest="student_init",
        choices=["pretrained", "from_teacher", "reinit"],
        help="pretrained: keep the student's weights (default); from_teacher: the teacher's layer subset; "
        "reinit: fresh weights",
    )
    g.add_argument("--student-layers", dest="student_layers", type=int, metavar="N", help="from_teacher: N layers")
    g.add_argument("--layer-rule", dest="layer_rule", choices=["spread", "stride", "first"], help="from_teacher")
    g.add_argument(
        "--model-kind",
        dest="model_kind",
        choices=["causal_lm", "sequence_classification", "encoder", "classifier"],
        help="causal_lm (default; text as next-token rows), sequence_classification (labelled sentences: "
        "--label-field) or encoder (sentences; pooled embeddings, default objective embed_distill); "
        "classifier: a module:factory pair on a table, image folder or built-in dataset",
    )
    g.add_argument(
        "--label-field",
        "--label-column",
        dest="label_field",
        metavar="F",
        help="sentence data or a table (module:factory pairs): the key/column of the class",
    )
    g.add_argument("--sentence-unit", dest="sentence_unit", choices=["line", "paragraph"], help="plain-text sentences")
    g.add_argument("--context-length", dest="context_length", type=int, metavar="L", help="tokens per row")
    g.add_argument("--text-field", dest="text_field", metavar="F", help="the JSONL key or CSV column of the text")
    g.add_argument(
        "--data-format",
        dest="data_format",
        choices=["auto", "text", "jsonl", "csv", "table", "images"],
        help="Hugging Face pairs: auto, text, jsonl or csv; module:factory pairs: auto, table, text or images",
    )
    g.add_argument("--data-mode", dest="data_mode", choices=["pack", "truncate"], help="pack (default) or truncate")


def _add_factory_pair_flags(p: argparse.ArgumentParser) -> None:
    """Flags of a user's own module:factory pair (JobConfig.teacher_factory, ...; kdcore.jobs.factory_config)."""
    g = p.add_argument_group(
        "your own module:factory pair (instead of --pair; with --data PATH or a built-in dataset name, "
        "--model-kind classifier or causal_lm)"
    )
    g.add_argument("--teacher-factory", dest="teacher_factory", metavar="M:F", help="package.module:factory")
    g.add_argument("--teacher-weights", dest="teacher_weights", metavar="FILE", help="the teacher's .safetensors")
    g.add_argument("--student-factory", dest="student_factory", metavar="M:F", help="package.module:factory")
    g.add_argument(
        "--student-weights",
        dest="student_weights",
        metavar="FILE",
        help="the student's .safetensors (optional with --student-init reinit or from_teacher)",
    )
    g.add_argument("--tokenizer", choices=["char", "word"], help="text data of a module:factory language model")


def _data_options(cfg: JobConfig, args: argparse.Namespace) -> dict[str, Any] | None:
    """The config's data_options with the data flags given on top (None: no data flag given)."""
    given = {
        key: getattr(args, flag) for flag, key in _DATA_OPTION_FLAGS.items() if getattr(args, flag, None) is not None
    }
    if not given:
        return None
    if not isinstance(cfg.data_options, dict):
        raise ConfigError([f"'data_options' must be a mapping; got {cfg.data_options!r}"])
    return {**cfg.data_options, **given}


def _add_speed_flags(p: argparse.ArgumentParser) -> None:
    """Memory and speed options (kdcore.jobs.performance)."""
    p.add_argument("--precision", choices=("fp32", "bf16"), help="bf16: autocast with float32 weights and loss")
    p.add_argument("--grad-accum", dest="grad_accum", type=int, help="micro-batches per optimizer step")
    p.add_argument(
        "--heldout-prompts",
        dest="heldout_prompts",
        type=int,
        metavar="N",
        help="causal LMs: held-out prompts greedily decoded at every evaluation for heldout_em (0: off; default 64)",
    )
    _add_switch(p, "--grad-checkpointing", "recompute the student's activations in backward (Hugging Face models)")
    p.add_argument(
        "--attn-implementation",
        dest="attn_implementation",
        choices=("auto", "eager", "sdpa"),
        help="auto: sdpa unless the objective needs attention weights",
    )
    _add_switch(
        p,
        "--lm-chunked",
        "token divergences from hidden states chunk by chunk (default on; --no-lm-chunked: full logits)",
    )


def config_from_args(args: argparse.Namespace) -> JobConfig:
    """The config file (if any) with the flags given on top."""
    cfg = JobConfig.load(args.config) if args.config else JobConfig()
    changes = {k: getattr(args, k) for k in _FLAG_FIELDS if getattr(args, k, None) is not None}
    if getattr(args, "pair", None) is not None and is_own_pair(replace(cfg, **changes)):
        raise ConfigError(
            [
                "give either --pair (a registered pair) or --teacher/--student or --teacher-factory/--student-factory "
                "(your own), not both"
            ]
        )
    if getattr(args, "teacher_cache", None) is not None:
        changes["teacher_cache"] = args.teacher_cache
    options = _data_options(cfg, args)
    if options is not None:
        changes["data_options"] = options
    if getattr(args, "loss_schedule", None):
        changes["schedules"] = _schedules_from_flags(cfg.schedules, args.loss_schedule)
    changes.update({k: getattr(args, k) for k in _BOOL_FLAG_FIELDS if getattr(args, k, None) is not None})
    items = getattr(args, "param", []) or []
    if not items:
        return _absolute_paths(with_source_label(replace(cfg, **changes)))
    if not isinstance(cfg.params, dict):
        raise ConfigError([f"'params' must be a mapping of parameter names to values; got {cfg.params!r}"])
    params = dict(cfg.params)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError([f"--param expects KEY=VALUE; got {item!r}"])
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    if params != cfg.params:
        changes["params"] = params
    return _absolute_paths(with_source_label(replace(cfg, **changes)))


def _absolute_paths(cfg: JobConfig) -> JobConfig:
    """The config with its teacher, student, weights and data paths absolute (~ expanded; relative to the
    current folder), so the run store's copy reruns and resumes from any folder (a built-in dataset's name stays)."""
    keys = ("teacher", "student", "teacher_weights", "student_weights", "data")
    paths = {k: getattr(cfg, k) for k in keys if not (k == "data" and _builtin_name(cfg))}
    absolute: dict[str, Any] = {
        k: str(Path(v).expanduser().absolute()) for k, v in paths.items() if isinstance(v, str) and v
    }
    return replace(cfg, **absolute) if absolute != {k: v for k, v in paths.items() if k in absolute} else cfg


def _builtin_name(cfg: JobConfig) -> bool:
    """A module:factory pair's data named as a built-in dataset (kept as a name)."""
    return bool(cfg.teacher_factory) and isinstance(cfg.data, str) and is_builtin_data(cfg.data)


def _schedules_from_flags(schedules: Any, flags: list[str]) -> dict:
    """The config file's schedules with each --loss-schedule on top (kdcore.jobs.schedules.parse_flag)."""
    from kdcore.jobs.schedules import parse_flag

    out = dict(schedules) if isinstance(schedules, dict) else {}
    try:
        out.update(parse_flag(item) for item in flags)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    return out


def user_set_fields(args: argparse.Namespace) -> set[str]:
    """The JobConfig fields the user set: by flag, by --param (temperature=, lam=, ...) or in the
    --config file (its keys, and the keys of its params)."""
    user = {k for k in (*_FLAG_FIELDS, "teacher_cache") if getattr(args, k, None) is not None}
    user |= {item.partition("=")[0] for item in getattr(args, "param", []) or []}
    user |= {"schedules"} if getattr(args, "loss_schedule", None) else set()
    if args.config:
        path = Path(args.config)
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else _yaml_load(text)
        params = data.get("params")
        user |= set(data) | (set(params) if isinstance(params, dict) else set())
    return user


def _yaml_load(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def config_with_recipe(args: argparse.Namespace) -> tuple[JobConfig, dict[str, Any]]:
    """(the job, {field: value} of the fields the pair's recipe filled): the config file and flags
    first (config_from_args), then the pair's registered recipe for every field the user did not set.
    A pair registered without a recipe (or a module:factory pair) keeps JobConfig's defaults."""
    from kdcore.jobs.recipes import pair_recipe, with_recipe

    cfg = config_from_args(args)
    user = user_set_fields(args)
    if is_own_pair(cfg):  # a user's own pair: no recipe; the objective that fits its model kind
        from kdcore.jobs.pair_source import own_pair_objective

        objective = own_pair_objective(cfg.model_kind)
        if "objective" in user or objective is None or objective == cfg.objective:
            return cfg, {}
        return replace(cfg, objective=objective), {"objective": objective}
    cfg, filled = with_recipe(cfg, pair_recipe(cfg.pair), user)
    return cfg, {k: getattr(cfg, k) for k in filled}


_RECIPE_HELP = (
    "Fields you do not set (by flag, --param or in the --config file) come from the pair's recipe, "
    "the settings under which KD beats the student alone on the same budget: objective, lr, schedule, "
    "epochs, training size, batch size, T, λ and teacher cache (T and λ only for the recipe's own "
    'objective). The command says which fields it took from the recipe (--json: "recipe_fields"); '
    "`python -m kdcore pairs` lists each pair's recipe. A pair registered without a recipe runs on "
    "the defaults (objective kd, lr 0.001, 5 epochs, the whole training split)."
)


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30):
        self.stream, self.width = stream, width

    def __call__(self, ev: dict) -> None:
        if ev["event"] == "notice":
            self.stream.write(f"\nnotice: {ev['message']}\n")
            self.stream.flush()
            return
        if ev["event"] not in ("step", "epoch", "end"):
            return
        total = max(1, ev.get("total_steps") or 1)
        done = min(ev["step"], total)
        filled = int(self.width * done / total)
        m = ev.get("metrics") or {}
        extra = f"loss {m['loss']:.4f}" if "loss" in m else (f"val_acc {m['val_acc']:.4f}" if "val_acc" in m else "")
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] step {done}/{total} "
            f"epoch {ev['epoch']}/{ev.get('epochs')} {extra}   "
        )
        if ev["event"] == "end":
            self.stream.write("\n")
        self.stream.flush()


def cmd_distill(args: argparse.Namespace) -> int:
    from kdcore.jobs.runner import run_job

    cfg, filled = config_with_recipe(args)
    cfg.validate()
    launched = _launch_devices(args, cfg)  # --devices N: this command again under torchrun (kdcore/jobs/launch.py)
    if launched is not None:
        return launched
    from kdcore.jobs.distributed import torchrun_env

    rank = torchrun_env()  # under torchrun: one rank of a data-parallel job (kdcore/jobs/distributed.py)
    if rank is not None and not rank.main:
        return _distill_rank(cfg, rank)
    _warn(cfg)
    _say_filled(cfg, filled, args)
    store = RunStore()
    started: dict = {}

    def on_event(ev: dict) -> None:
        if ev["event"] == "start" and not args.json:
            print(f"run {ev['run_id']}", flush=True)
        started.update(ev)
        if not args.json:
            _Progress()(ev)

    from kdcore.jobs.tracking_cli import live_logger
    from kdcore.methods import get_method

    live = live_logger(store, args)  # --log-to: back-ends checked before the run starts
    if get_method(cfg.objective).chain and rank is None:
        return _distill_chain(cfg, store, filled, args, live)
    callback = live.wrap(on_event) if live else on_event
    with live or nullcontext():
        if rank is None:
            result = run_job(cfg, store=store, callback=callback)
        else:
            result = _distill_rank(cfg, rank, store=store, callback=callback)
    return _say_result(result, filled, args)


def _say_filled(cfg: JobConfig, filled: dict, args: argparse.Namespace) -> None:
    """Which fields the recipe (or an own pair's defaults) filled in, on stderr (not with --json)."""
    if filled and not args.json:
        print(
            f"from the {cfg.pair} {'defaults' if is_own_pair(cfg) else 'recipe'}: "
            + ", ".join(f"{k}={v}" for k, v in filled.items())
            + " (set a field to override it)",
            file=sys.stderr,
            flush=True,
        )


def _say_result(result: Any, filled: dict, args: argparse.Namespace) -> int:
    """The run's end: one JSON object (--json) or a line of metrics; the exit status."""
    if args.json:
        _print_json(_result_json(result, recipe_fields=filled))
    else:
        print(
            f"{result.state}: "
            + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.metrics.items())
        )
        if result.error:
            print(result.error, file=sys.stderr)
    return 0 if result.state == "completed" else 1


def _launch_devices(args: argparse.Namespace, cfg: JobConfig) -> int | None:
    """--devices N (N > 1, outside torchrun): run this command under torchrun with N processes and return
    its exit status; None when the job runs here."""
    from kdcore.jobs.distributed import torchrun_env
    from kdcore.jobs.launch import check_devices, launch

    n = getattr(args, "devices", None)
    if n is None or torchrun_env() is not None:
        return None
    check_devices(n, cfg.device)
    return None if n == 1 else launch(getattr(args, "argv", None) or sys.argv[1:], n)


def _distill_rank(cfg: JobConfig, rank: Any, **kw: Any) -> Any:
    """One torchrun rank's share of the job: rank 0 gets the store and callback (and returns its result),
    the others train silently and return an exit status."""
    from kdcore.jobs.distributed import run_distributed

    result = run_distributed(cfg, env=rank, **kw)
    return result if rank.main else (0 if result.state == "completed" else 1)


def _distill_chain(
    cfg: JobConfig, store: RunStore, filled: dict, args: argparse.Namespace, live: LiveLogger | None = None
) -> int:
    """takd, dgkd, ban: the whole chain of runs, one progress bar per stage, then each stage's accuracy."""
    from kdcore.jobs.chain import run_chain

    def on_event(ev: dict) -> None:
        if ev["event"] == "start" and not args.json:
            print(f"chain {ev['chain_id']} stage {ev['stage']}/{ev['stages']}: run {ev['run_id']}", flush=True)
        if not args.json:
            _Progress()(ev)

    with live or nullcontext():
        res = run_chain(cfg, store=store, callback=live.wrap(on_event) if live else on_event)
    if args.json:
        _print_json({"run_id": res.chain_id, "state": res.state, "metrics": res.metrics, "error": res.error})
    else:
        print(f"chain {res.chain_id}: {res.state}")
        print(_stages_text(res.metrics.get("stages", []), res.metrics.get("teacher_val_acc")))
        if res.error:
            print(res.error, file=sys.stderr)
    return 0 if res.state == "completed" else 1


def _stages_text(stages: list[dict], teacher_acc: float | None) -> str:
    """One line per stage: teacher → student, parameters, final and best validation accuracy."""

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [f"  teacher val_acc {pct(teacher_acc)}"]
    for st in stages:
        size = f" ({st['student_parameters']:,} params)" if st.get("student_parameters") else ""
        lines.append(
            f"  stage {st['stage']}: {st['teacher']} → {st['student']}{size} "
            f"{st['state']}: final val_acc {pct(st['final_val_acc'])}, best {pct(st['best_val_acc'])} "
            f"(run {st['run_id']})"
        )
    return "\n".join(lines)


# ---- runs: one handler per action ---------------------------------------------------------------------


def _warn(cfg: JobConfig) -> None:
    """Values that validate but will not train well, said on stderr before the run."""
    from kdcore.jobs.sanity import sanity_warnings

    for w in sanity_warnings(cfg):
        print(f"warning: {w}", file=sys.stderr, flush=True)


def _runs_list(store: RunStore, args: argparse.Namespace) -> int:
    if args.state is not None and args.state not in STATES:
        raise ValueError(f"--state must be one of {', '.join(STATES)}. Got {args.state!r} instead.")
    if args.limit is not None and args.limit < 1:
        raise ValueError(
            f"--limit must be a positive number of runs. Got {args.limit} instead; leave it out to list every run."
        )
    df = store.list_runs(state=args.state, limit=args.limit)
    if df["workspace"].isna().all():  # no workshop runs: the columns as before workspaces
        df = df.drop(columns=["workspace"])
    if args.json:
        _print_json({"runs": df.to_dict(orient="records")})
    else:
        empty = f"no {args.state} runs" if args.state else _no_runs_text(store)
        print(_table_text(df.drop(columns=["error"])) if len(df) else empty)
    return 0


def _no_runs_text(store: RunStore) -> str:
    """ "no runs yet", unless run folders the database does not know are there (a deleted store)."""
    from kdcore.jobs.store_check import orphan_folders

    orphans = orphan_folders(store)
    if not orphans:
        return "no runs yet"
    return (
        f"no runs in the database, but {len(orphans)} run folder(s) under {store.root / 'runs'} are not in it; "
        f"`python -m kdcore runs check --repair` re-indexes them"
    )


def _table_text(df: pd.DataFrame) -> str:
    """A DataFrame as right-aligned text columns (as `to_string(index=False)`, fast for 10,000 rows)."""
    cols = [[str(c)] + ["" if v is None or v != v else str(v) for v in df[c].tolist()] for c in df.columns]
    widths = [max(map(len, col)) for col in cols]
    return "\n".join(" ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in zip(*cols))


def _runs_show(store: RunStore, args: argparse.Namespace) -> int:
    run = store.get_run(args.ids[0])
    epochs = store.metrics(run["id"], "epoch")
    stages = store.chain_stages(run["id"])
    if args.json:
        _print_json({"run": run, "epochs": epochs.to_dict(orient="records"), "stages": stages})
        return 0
    for k in (
        "id",
        "state",
        "pair",
        "objective",
        "seed",
        "device",
        "data_fingerprint",
        "created",
        "step",
        "total_steps",
        "epoch",
        "error",
        "chain_id",
        "chain_stage",
    ):
        print(f"{k:>17}: {run.get(k)}")
    print(f"{'config':>17}: {json.dumps(run['config'])}")
    print(f"{'summary':>17}: {json.dumps(_jsonable(run['summary']))}")
    if len(epochs):
        cols = [c for c in ("epoch", "step", "train_loss", "val_loss", "val_acc", "val_agreement") if c in epochs]
        print(epochs[cols].to_string(index=False))
    if stages:
        summary = run["summary"] or {}
        print(f"{'stages':>17}: {len(stages)} (a {run['objective']} chain)")
        print(_stages_text(summary.get("stages") or [_stage_row(r) for r in stages], summary.get("teacher_val_acc")))
    return 0


def _stage_row(run: dict) -> dict:
    """A chain stage's line from its own run row (while the chain is still running)."""
    s = run["summary"] or {}
    return {
        "stage": run["chain_stage"],
        "teacher": "",
        "student": run["name"],
        "student_parameters": None,
        "state": run["state"],
        "final_val_acc": s.get("final_val_acc"),
        "best_val_acc": s.get("best_val_acc"),
        "run_id": run["id"],
    }


def _runs_compare(store: RunStore, args: argparse.Namespace) -> int:
    from kdcore.jobs.worker import compare

    if len(args.ids) < 1:
        raise ValueError("`runs compare` takes one or more RUN_IDs. Got none.")
    df = compare(args.ids, store=store)
    if args.json:
        _print_json({"runs": df.to_dict(orient="records")})
    else:
        print(df.to_string(index=False))
    return 0


def _runs_export(store: RunStore, args: argparse.Namespace) -> int:
    rid = args.ids[0]
    if args.to:  # MLflow or TensorBoard (kdcore.jobs.tracking_cli)
        from kdcore.jobs.tracking_cli import runs_export_to

        done = runs_export_to(store, args)
        if args.json:
            _print_json(done)
        else:
            print(f"run {rid} exported to {done['where']}")
        return 0
    out = export_run(store, rid, Path(args.out) if args.out else Path.cwd() / f"run-{rid}")
    out.append(_write_checksums(out))
    if args.json:
        _print_json({"run_id": rid, "files": [str(p) for p in out]})
    else:
        print("\n".join(str(p) for p in out))
    return 0


def _runs_cancel(store: RunStore, args: argparse.Namespace) -> int:
    from kdcore.jobs.worker import cancel

    cancel(args.ids[0], store=store)
    return 0


def _runs_resume(store: RunStore, args: argparse.Namespace) -> int:
    from kdcore.jobs.runner import run_job

    rid = args.ids[0]
    run = store.get_run(rid)
    holder = store.lease_holder(rid)
    if holder is not None:
        raise RunBusyError(rid, holder)
    if run["state"] in ("running", "queued", "completed"):
        raise ValueError(f"Run {rid} is {run['state']}: only interrupted, cancelled or failed runs can be resumed.")
    cfg = JobConfig.from_dict(run["config"])
    _warn(cfg)
    result = run_job(cfg, store=store, run_id=rid, resume=True, callback=None if args.json else _Progress())
    return _report_result(result, args)


def _runs_rerun(store: RunStore, args: argparse.Namespace) -> int:
    from kdcore.jobs.chain import check_rerunnable, is_chain, run_chain
    from kdcore.jobs.runner import RunResult, run_job

    rid = args.ids[0]
    run = check_rerunnable(store.get_run(rid))
    cfg = JobConfig.from_dict(run["config"])
    new_id = store.create_run(cfg, state="running", parent_id=rid)
    if is_chain(cfg.objective):
        res = run_chain(cfg, store=store, run_id=new_id)
        return _report_result(RunResult(res.chain_id, res.state, res.metrics, res.error), args)
    result = run_job(cfg, store=store, run_id=new_id, callback=None if args.json else _Progress())
    return _report_result(result, args)


def _result_json(result: RunResult, **extra: Any) -> dict:
    """What a run command prints with --json: id, state, metrics, error, `extra`, then the notices."""
    return {
        "run_id": result.run_id,
        "state": result.state,
        "metrics": result.metrics,
        "error": result.error,
        **extra,
        "notices": result.notices,
    }


def _report_result(result: RunResult, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(_result_json(result))
    else:
        print(f"run {result.run_id}: {result.state}")
    return 0 if result.state == "completed" else 1


def _runs_check(store: RunStore | None, args: argparse.Namespace) -> int:
    """integrity_check, every artifact's sha256, orphaned run folders; --repair re-indexes them."""
    from kdcore.jobs.store import default_home
    from kdcore.jobs.store_check import check_store

    report = check_store(store.root if store is not None else default_home(), repair=args.repair)
    if args.json:
        _print_json(report.to_dict())
        return 0 if report.ok else 1
    lines = [f"database: {'; '.join(report.integrity)}"]
    lines += [f"bad file: {b}" for b in report.bad_artifacts] + [f"unverified: {u}" for u in report.unverified]
    lines += [f"orphaned run folder (not in the database): {o}" for o in report.orphans]
    lines += [f"repaired: {r}" for r in report.repaired]
    if report.orphans and not args.repair:
        lines.append("`python -m kdcore runs check --repair` re-indexes the orphaned folders.")
    print("\n".join(lines + ["ok" if report.ok else "problems found"]))
    return 0 if report.ok else 1


RUNS_ACTIONS = {
    "list": _runs_list,
    "show": _runs_show,
    "compare": _runs_compare,
    "export": _runs_export,
    "resume": _runs_resume,
    "rerun": _runs_rerun,
    "cancel": _runs_cancel,
    "check": _runs_check,
}
_ONE_RUN_ACTIONS = ("show", "export", "resume", "rerun", "cancel")


def cmd_runs(args: argparse.Namespace) -> int:
    """`python -m kdcore runs ACTION [RUN_ID ...]`: the action's handler in RUNS_ACTIONS."""
    if args.action in _ONE_RUN_ACTIONS and len(args.ids) != 1:
        raise ValueError(f"`runs {args.action}` takes one RUN_ID. Got {len(args.ids)}.")
    if args.action == "check":
        return _runs_check(None, args)  # a damaged store is checked (and repaired) before it is opened
    return RUNS_ACTIONS[args.action](RunStore(), args)


def export_run(store: RunStore, run_id: str, folder: Path) -> list[Path]:
    """Write a run's config (JSON), metrics (Parquet, one file per level) and final student weights
    (checked against their sha256 first: damaged weights are refused, never copied)."""
    run = store.get_run(run_id)
    weights = _final_weights(store, run_id)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is an existing file; export writes a folder. Give a new folder path.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        files = [folder / "config.json", folder / "run.json"]
        files[0].write_text(json.dumps(run["config"], indent=2, sort_keys=True))
        files[1].write_text(json.dumps(_jsonable({k: v for k, v in run.items() if k != "config"}), indent=2))
        for level in ("step", "epoch", "checkpoint"):
            df = store.metrics(run_id, level)
            if len(df):
                path = folder / f"metrics_{level}.parquet"
                df.to_parquet(path, index=False)
                files.append(path)
        if weights is not None:
            files.append(_copy_verified(weights, folder / "student.safetensors"))
    except OSError as exc:
        raise StoreError(
            f"Run {run_id} could not be exported to {folder}: {exc.strerror or exc}. Choose a "
            f"writable folder with --out."
        ) from exc
    return files


def _final_weights(store: RunStore, run_id: str) -> bytes | None:
    """The run's final weights, verified (IntegrityError names the file when missing or altered)."""
    if "student.safetensors" not in set(store.artifacts(run_id)["name"]):
        return None
    return store.read_artifact(run_id, "student.safetensors")


def _copy_verified(data: bytes, dst: Path) -> Path:
    from kdcore.jobs.store import atomic_write_bytes

    atomic_write_bytes(dst, data)
    if sha256_bytes(dst.read_bytes()) != sha256_bytes(data):
        raise IntegrityError(f"The exported weights {dst} do not match the run's weights after copying.")
    return dst


def _write_checksums(files: list[Path]) -> Path:
    """SHA256SUMS beside the exported files (check them with `sha256sum -c SHA256SUMS`)."""
    sums = files[0].parent / "SHA256SUMS"
    try:
        sums.write_text("".join(f"{sha256_bytes(p.read_bytes())}  {p.name}\n" for p in files))
    except OSError as exc:
        raise StoreError(f"The checksums of the export could not be written to {sums}: {exc}") from exc
    return sums


def cmd_protocol(args: argparse.Namespace) -> int:
    from kdcore.jobs.protocols import run_protocol

    cfg = config_from_args(args).validate()
    seeds = number_list("--seeds", args.seeds, int)
    temperatures, lams = (
        number_list("--temperatures", args.temperatures, float),
        number_list("--lams", args.lams, float),
    )
    _warn(cfg)
    for t in temperatures:
        _warn(replace(cfg, temperature=t))
    res = run_protocol(
        cfg,
        temperatures=temperatures,
        lams=lams,
        seeds=seeds,
        baseline=not args.no_baseline,
        store=RunStore(),
        callback=None if args.json else _protocol_progress,
        executor=_executor_from_args(args),
    )
    if args.json:
        _print_json({"table": res.table.to_dict(orient="records"), "runs": res.runs.to_dict(orient="records")})
    else:
        cols = ["variant", "n_seeds", "metric", "best", "final"]
        print(res.table[cols].to_string(index=False))
    return 0 if (res.runs["state"] == "completed").all() else 1


def _protocol_progress(ev: dict) -> None:
    if ev["event"] == "protocol_run":
        print(f"[{ev['index'] + 1}/{ev['of']}] {ev['variant']} seed={ev['seed']}", file=sys.stderr, flush=True)
    _run_done_progress(ev)


def _run_done_progress(ev: dict) -> None:
    """An executor's progress: a run ended (kdcore.jobs.executors)."""
    if ev["event"] == "run_done":
        print(f"[{ev['done']}/{ev['of']} done] {ev['run_id']} {ev['state']}", file=sys.stderr, flush=True)


def _add_executor_flags(p: argparse.ArgumentParser) -> None:
    """--executor, --workers, --ray-address (README "Scaling out")."""
    p.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="run the runs on worker processes (local) or Ray tasks (ray) instead of one after another here",
    )
    p.add_argument("--workers", type=int, help="local: worker processes (1 to the CPU cores; implies --executor local)")
    p.add_argument("--ray-address", help="ray: 'auto' or HOST:PORT of a running cluster (default: start a local Ray)")


def _executor_from_args(args: argparse.Namespace) -> Any:
    """The executor the flags name, or None (the runs one after another in this process)."""
    from kdcore.jobs.executors import make_executor

    kind = args.executor or ("ray" if args.ray_address else "local" if args.workers is not None else None)
    if kind is None:
        return None
    return make_executor(kind, workers=args.workers, ray_address=args.ray_address)


# ---- methods (the method table, kdcore.methods) ------------------------------------------------------


def _objective_help() -> str:
    from kdcore.methods import all_methods

    names = ", ".join(m.name + (f" ({'/'.join(m.aliases)})" if m.aliases else "") for m in all_methods())
    return f"a method of the table: {names}; or 'sum' (config files). `python -m kdcore methods` describes each"


def _cmd_methods(args: argparse.Namespace) -> int:
    """`python -m kdcore methods [--json]`: the method table."""
    from kdcore.methods import all_methods

    rows = [m.describe() for m in all_methods()]
    if args.json:
        _print_json({"methods": rows})
        return 0
    for r in rows:
        print(_method_text(r))
    return 0


def _method_text(r: dict) -> str:
    """One method of the table in a few lines of text."""
    aka = f"  (aliases: {', '.join(r['aliases'])})" if r["aliases"] else ""
    lines = [
        f"{r['name']}{aka}: {r['help']}",
        f"    tasks: {', '.join(r['tasks'])} · CE by default: {'yes' if r['ce_default'] else 'no'}"
        + (f" · default T: {r['default_temperature']:g}" if r["default_temperature"] is not None else ""),
        f"    loss: {r['loss']}" + (f" · components: {r['components']}" if r["components"] else ""),
        f"    spec: {r['section']}" + (f" · source: {r['source']}" if r["source"] else ""),
    ]
    for p in r["params"]:
        flags = "required" if p["required"] else f"default {p['default']!r}"
        flags += ", the job's field when not set" if p["shared"] else ""
        lines.append(f"    --param {p['name']}: {p['range']} ({flags}) — {p['help']}")
    return "\n".join(lines)


def _add_methods_parser(sub: Any) -> None:
    m = sub.add_parser("methods", help="list the method table: names, aliases, tasks, parameters, source")
    m.add_argument("--json", action="store_true", help='print {"methods": [{name, aliases, tasks, params, ...}]}')
    m.set_defaults(func=_cmd_methods)


# ---- pairs (the pair registry and each pair's recipe) ----------------------------------------------------


def _cmd_pairs(args: argparse.Namespace) -> int:
    """`python -m kdcore pairs [--json]`: the registered pairs, each with its recipe (no model is loaded)."""
    from kdcore.jobs.recipes import pair_recipe
    from kdcore.pair_registry import registered_pairs

    entries = registered_pairs()
    recipes = {name: pair_recipe(name) for name in entries}
    if args.json:
        _print_json(
            {
                "pairs": [
                    {
                        "name": name,
                        "description": e.description,
                        "source": e.source,
                        "recipe": _recipe_dict(recipes[name]),
                    }
                    for name, e in entries.items()
                ]
            }
        )
        return 0
    for name, e in entries.items():
        recipe = recipes[name]
        print(f"{name}: {e.description}\n    recipe: {recipe.describe() if recipe else 'none (JobConfig defaults)'}")
    return 0


def _recipe_dict(recipe: Recipe | None) -> dict | None:
    return None if recipe is None else {**recipe.settings(), "measured": recipe.measured}


def _add_pairs_parser(sub: Any) -> None:
    p = sub.add_parser("pairs", help="list the registered pairs and the recipe distill uses for each")
    p.add_argument("--json", action="store_true", help='print {"pairs": [{name, description, source, recipe}]}')
    p.set_defaults(func=_cmd_pairs)


# ---- doctor (kdcore.doctor; added by the doctor branch) ------------------------------------------------


def _cmd_doctor(args: argparse.Namespace) -> int:
    """`python -m kdcore doctor RUN_ID [--json]`: findings on a run (exit 0 whatever they are; 2 for a bad id)."""
    from kdcore.doctor import diagnose

    report = diagnose(args.run_id, store=RunStore())
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"run {args.run_id}: {len(report.findings)} finding(s)")
        for f in report.findings:
            print(f"\n[{f.severity.upper()}] {f.title}  ({f.id})")
            for k, v in f.to_dict()["evidence"].items():
                print(f"    {k}: {v}")
            print(f"  fix: {f.fix}")
        skipped = [f"{k} ({v[9:]})" for k, v in report.checks.items() if v.startswith("skipped")]
        if skipped:
            print("\nnot checked: " + "; ".join(skipped))
    return 0


def _add_doctor_parser(sub: Any) -> None:
    d = sub.add_parser("doctor", help="diagnose a run: findings with evidence and a fix")
    d.add_argument("run_id", metavar="RUN_ID")
    d.add_argument("--json", action="store_true", help='print {"run_id", "findings": [...], "checks": {...}}')
    d.set_defaults(func=_cmd_doctor)


# ---- make-student (a from_teacher student, kdcore.adapters.make_student_from_teacher) -------------------


def _cmd_make_student(args: argparse.Namespace) -> int:
    """`python -m kdcore make-student --from DIR --layers N --out DIR`: a shallower student directory;
    `--pair NAME --out DIR`: a registered/module pair's student initialised from its teacher's blocks."""
    from kdcore.adapters import make_student_from_teacher

    if args.pair is not None:
        return _make_pair_student(args)
    _check_student_layers(args)
    out = Path(args.out).expanduser()
    created = not out.exists()
    try:
        made = make_student_from_teacher(args.teacher, args.layers, out, rule=args.rule, offset=args.offset)
    except Exception:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave no empty folder behind a refused student
        raise
    return _print_made(
        args,
        made,
        f"{made.architecture} student with {len(made.layers)} of the teacher's {made.teacher_layers} "
        f"layers written to {made.path}\nteacher layers kept: {made.layers}",
    )


def _make_pair_student(args: argparse.Namespace) -> int:
    """make-student --pair: student.safetensors and mapping.json (kdcore.jobs.student_init.write_pair_student)."""
    from kdcore.jobs.student_init import mapping_text, write_pair_student

    if args.layers is not None:
        raise ValueError(
            f"--layers applies to --from (a Hugging Face teacher directory); with --pair the student keeps its "
            f"own architecture's depth (the pair's student). Got --layers {args.layers}: remove it."
        )
    made = write_pair_student(args.pair, args.out, rule=args.rule, offset=args.offset)
    return _print_made(
        args,
        made,
        f"{made.architecture} student of pair {made.pair!r} initialised from its teacher's blocks, written "
        f"to {made.path / 'student.safetensors'} (mapping in mapping.json)\n{mapping_text(made.mapping)}",
    )


def _print_made(args: argparse.Namespace, made: Any, text: str) -> int:
    """What make-student wrote: its fields as JSON with --json (the path as text), else `text`."""
    if args.json:
        _print_json({**vars(made), "path": str(made.path)})
    else:
        print(text)
    return 0


def _check_student_layers(args: argparse.Namespace) -> None:
    """--layers named as the flag it is; the library checks the rest against the teacher's config.json
    before any weights load."""
    if args.layers is None:
        raise ValueError("--from needs --layers N, the student's number of layers (fewer than the teacher's).")
    if args.layers < 1:
        raise ValueError(
            f"--layers must be the student's number of layers, at least 1. Got {args.layers}; "
            f"choose 1 up to the teacher's number of layers."
        )


def _add_make_student_parser(sub: Any) -> None:
    m = sub.add_parser(
        "make-student",
        help="write a shallower student initialised from its teacher's layers (--from DIR, or --pair NAME; METHODS §14.2)",
    )
    source = m.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="teacher", metavar="TEACHER_DIR", help="a Hugging Face teacher's directory")
    source.add_argument(
        "--pair",
        metavar="NAME",
        help="a registered pair or module:factory whose student is a shallower copy of its teacher: writes "
        "DIR/student.safetensors and DIR/mapping.json",
    )
    m.add_argument("--layers", type=int, metavar="N", help="--from only: the student's number of layers")
    m.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory for the student")
    m.add_argument(
        "--rule",
        choices=["spread", "stride", "first"],
        default="spread",
        help="which teacher layers: spread (first and last kept, the default), stride (every k-th), first",
    )
    m.add_argument("--offset", type=int, default=0, metavar="K", help="stride only: 0 <= K < teacher/student layers")
    m.add_argument(
        "--json",
        action="store_true",
        help='print {"path", "layers", "teacher_layers", "architecture", "tokenizer_files"} '
        '(--pair: {"path", "mapping", "pair", "architecture"})',
    )
    m.set_defaults(func=_cmd_make_student)


# ---- gguf-to-hf (a GGUF file saved as a Hugging Face directory, kdcore.adapters.gguf_to_hf) ---------------


def _cmd_gguf_to_hf(args: argparse.Namespace) -> int:
    """`python -m kdcore gguf-to-hf FILE --out DIR`: model, config and tokenizer via save_pretrained."""
    from kdcore.adapters import gguf_to_hf

    try:
        made = gguf_to_hf(args.file, args.out)
    except ImportError as exc:  # the optional gguf package is missing: one line naming the install command
        raise ValueError(str(exc)) from None
    if args.json:
        _print_json({**vars(made), "path": str(made.path)})
    else:
        tied = "tied" if made.tied_embeddings else "untied"
        print(
            f"{made.architecture} GGUF file written as a Hugging Face {made.model_type} directory ({tied} "
            f"embeddings) to {made.path}\nfiles: {', '.join(made.files)}"
        )
    return 0


def _add_gguf_to_hf_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gguf-to-hf", help="save a GGUF causal LM as a Hugging Face directory (needs pip install -e '.[gguf]')"
    )
    g.add_argument("file", metavar="FILE", help="the .gguf file")
    g.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    g.add_argument(
        "--json", action="store_true", help='print {"path", "architecture", "model_type", "tied_embeddings", "files"}'
    )
    g.set_defaults(func=_cmd_gguf_to_hf)


# ---- compare (the method leaderboard, kdcore.jobs.leaderboard) -------------------------------------------

_COMPARE_BUDGET = (*BUDGET_FLAGS, ("--optimizer", "optimizer", str))


def _cmd_compare(args: argparse.Namespace) -> int:
    """`python -m kdcore compare --pair NAME --methods A,B --seeds 0,1,2 [budget flags] [--json]`."""
    from kdcore.jobs.leaderboard import compare_methods, table_text

    budget = budget_from_args(args, _COMPARE_BUDGET)
    res = compare_methods(
        args.pair,
        args.methods,
        number_list("--seeds", args.seeds, int),
        base=budget,
        store=RunStore(),
        callback=None if args.json else _compare_progress,
        executor=_executor_from_args(args),
        metric=args.metric,
        params=_method_params(args.param),
    )
    if args.json:
        _print_json(
            {
                "pair": args.pair,
                "protocol_id": res.protocol_id,
                "budget": res.budget,
                "table": res.table.to_dict(orient="records"),
                "runs": res.runs.to_dict(orient="records"),
            }
        )
    else:
        print(table_text(res.table))
    return 0 if (res.runs["state"] == "completed").all() else 1


def _method_params(items: list[str]) -> dict[str, dict]:
    """{method: {key: value}} from --param METHOD.KEY=VALUE items (VALUE as JSON, else text)."""
    out: dict[str, dict] = {}
    for item in items:
        key, eq, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (eq and dot and method and name):
            raise ConfigError([f"compare's --param expects METHOD.KEY=VALUE (e.g. gkd.prompts=records); got {item!r}"])
        try:
            out.setdefault(method, {})[name] = json.loads(value)
        except ValueError:
            out.setdefault(method, {})[name] = value
    return out


def _compare_progress(ev: dict) -> None:
    if ev["event"] == "leaderboard_run":
        print(f"[{ev['index'] + 1}/{ev['of']}] {ev['method']} seed={ev['seed']}", file=sys.stderr, flush=True)
    _run_done_progress(ev)


def _add_compare_parser(sub: Any) -> None:
    c = sub.add_parser(
        "compare",
        help="method leaderboard: methods and the student alone on a pair's recipe budget, over seeds",
        description="Runs each method (and the student alone, ce) with the same budget (the pair's "
        "recipe, the flags below on top) and prints mean ± std at the best and final epoch and the "
        "gain over the student alone with its 95% t-interval over seeds.",
    )
    c.add_argument("--pair", required=True, help="sample pair name or module:factory")
    c.add_argument("--methods", required=True, help="comma-separated method names, e.g. kd,dkd,cakd")
    c.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    add_budget_flags(c, _COMPARE_BUDGET, help="budget override for every method")
    c.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="a parameter of one compared method, VALUE read as JSON, else as text (e.g. --param gkd.prompts=records)",
    )
    c.add_argument(
        "--metric",
        help="epoch metric to rank by (default: each run's own; causal LMs: heldout_em = greedy exact match "
        "on held-out prompts, e.g. tinylang's copy task)",
    )
    c.add_argument("--json", action="store_true", help='print {"pair", "protocol_id", "budget", "table", "runs"}')
    _add_executor_flags(c)
    c.set_defaults(func=_cmd_compare)


def add_experiment_parser(sub: Any) -> None:
    from kdcore.jobs.experiment_cli import add_experiment_parser as add

    add(sub)


def _add_process_flags(d: argparse.ArgumentParser) -> None:
    """distill's --devices (processes) and --shard (FSDP)."""
    d.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="train with N processes (data-parallel, torchrun; one GPU each on CUDA, gloo on CPU): "
        "the global batch stays --batch-size",
    )
    d.add_argument(
        "--shard",
        choices=("none", "full"),
        help="full: shard a Hugging Face student's layers, gradients and optimizer state over the processes "
        "(FSDP; needs --devices N or torchrun)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m kdcore", description="KD Workbench: distillation jobs and runs.")
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("distill", help="train a student against a teacher", description=_RECIPE_HELP)
    _add_job_flags(d)
    add_live_flags(d)
    _add_process_flags(d)
    d.set_defaults(func=cmd_distill)
    r = sub.add_parser("runs", help="list, show, compare, export, resume, re-run, cancel or check runs")
    r.add_argument("action", choices=list(RUNS_ACTIONS))
    r.add_argument("ids", nargs="*", metavar="RUN_ID")
    r.add_argument("--state", help="list: only runs in this state")
    r.add_argument("--limit", type=int, help="list: at most this many runs")
    r.add_argument("--out", help="export: the folder to write (default ./run-RUN_ID)")
    add_export_flags(r)
    r.add_argument(
        "--repair", action="store_true", help="check: move a damaged database aside and re-index orphaned run folders"
    )
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)
    p = sub.add_parser("protocol", help="baseline, temperature/λ sweeps, repeats over seeds -> mean ± std table")
    _add_job_flags(p)
    p.add_argument("--temperatures", default="", help="comma-separated, e.g. 1,4,8")
    p.add_argument("--lams", default="", help="comma-separated, e.g. 0.5,0.9")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--no-baseline", action="store_true", help="skip the student-alone baseline")
    _add_executor_flags(p)
    p.set_defaults(func=cmd_protocol)
    _add_doctor_parser(sub)
    _add_methods_parser(sub)
    _add_pairs_parser(sub)
    _add_make_student_parser(sub)
    _add_gguf_to_hf_parser(sub)
    _add_compare_parser(sub)
    add_experiment_parser(sub)
    from kdcore.eval.cli_scorecard import add_scorecard_parser  # the LM scorecard (methods/15 §15.6)

    add_scorecard_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # distill --devices: the command torchrun reruns
    try:
        return _run(args)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    """The command, with every expected error as one line and an exit status."""
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _fail(args, str(exc), problems=exc.problems)
    except (ValueError, StoreError, RunBusyError) as exc:
        _fail(args, str(exc))
    except OverflowError as exc:
        _fail(args, f"A number is too large to store or compute with ({exc}); integers must lie in [0, 2**63 - 1].")
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        _fail(args, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except KeyboardInterrupt as exc:
        rid = exc.run_id if isinstance(exc, JobInterrupted) else None
        print("\ninterrupted" + (f", resume with `python -m kdcore runs resume {rid}`" if rid else ""), file=sys.stderr)
        return 130
    return 2


def _fail(args: argparse.Namespace, message: str, problems: list[str] | None = None) -> None:
    if getattr(args, "json", False):
        _print_json({"error": message, **({"problems": problems} if problems else {})})
    else:
        print(f"error: {message}", file=sys.stderr)
