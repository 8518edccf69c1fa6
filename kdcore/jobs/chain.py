"""Chains of runs, a finished student becoming the next teacher (methods/13 §13.2, §13.4a).

    res = run_chain(JobConfig(pair="digits", objective="takd", params={"path": "full"}))
    res.stages      # one RunResult per stage; res.metrics["stages"]: each stage's accuracy

- TAKD (Mirzadeh et al. AAAI 2020): teacher → assistant(s) → student, each stage classic KD (§1)
  from the stage before, its student trained from a fresh initialisation. `path` "full" takes every
  size of the pair's student ladder (`Pair.ladder`, largest first), "midpoint" the one assistant
  whose measured validation accuracy is nearest (teacher's + student alone's) / 2, "none" no
  assistant (one stage: exactly classic KD with the same seed and budget).
- DGKD (Son et al. ICCV 2021): every ladder size in turn; each stage learns from the teacher and
  every model trained before it (a `GuideStack`), `drop_num` guides dropped at random per step.
- BAN (Furlanello et al. ICML 2018): generation 0 of the student's architecture learns from the
  labels, generation k from generation k − 1 (same architecture, fresh initialisation); optionally
  the mean softmax of generations 1…k is evaluated (`ensemble`).

Every stage runs under the chain's budget (epochs, steps, lr, data) with seed `seed + stage − 1`.
The chain is one run in the store (its config the chain's, its summary the stages', its epoch
curves those of its final student); each stage is a child run (`chain_id`, `chain_stage`; `RunStore.chain_stages(chain_id)`). Everything is checked
before the first stage starts: a chain whose stages do not shrink, an assistant larger than its
teacher, a pair without a ladder are refused with the reason and the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn

from kdcore.adapters import wrap
from kdcore.adapters.base import ModelAdapter
from kdcore.jobs.config import JobConfig
from kdcore.jobs.evaluation import _batched_logits
from kdcore.jobs.reporting import Cancel
from kdcore.jobs.resolve import resolve_pair
from kdcore.jobs.runner import RunResult, run_job
from kdcore.jobs.store import RunStore
from kdcore.jobs.student_init import refuse_in_chain
from kdcore.losses import takd_path
from kdcore.methods import get_method, method_names, misfit_message
from kdcore.metrics import accuracy
from kdcore.pairs import Pair
from kdcore.validation import InvalidParameterError

ChainCallback = Callable[[dict], object]


def chain_methods() -> tuple[str, ...]:
    """The methods of the table that run as chains (takd, dgkd, ban)."""
    return tuple(n for n in method_names() if get_method(n).chain)


def is_chain(objective: Any) -> bool:
    """Whether an objective name (or alias) runs as a chain of runs."""
    try:
        return bool(get_method(objective).chain)
    except ValueError:
        return False


class GuideStack(nn.Module):
    """DGKD's teacher for one stage: submodule guides.0 is the teacher, guides.i the i-th model
    trained before the stage. forward runs every guide and returns the teacher's logits [B, C]; the
    step reads the others as the features of layers guides.i."""

    def __init__(self, guides: list[nn.Module]) -> None:
        super().__init__()
        self.guides = nn.ModuleList(guides)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, ...]
        outs = [g(x) for g in self.guides]  # each [B, C]
        return outs[0]


@dataclass(frozen=True)
class ChainModel:
    """One model of a chain: the teacher, or the student of a stage (its architecture)."""

    label: str  # "teacher", "assistant 1", "student", "generation 0", ...
    adapter: ModelAdapter  # the teacher's weights; for a stage, the architecture it trains afresh
    parameters: int


@dataclass(frozen=True)
class ChainPlan:
    """What a chain will run, checked before anything runs."""

    method: str  # "takd" | "dgkd" | "ban"
    models: list[ChainModel]  # models[0]: the first teacher; models[i]: stage i's student
    configs: list[JobConfig]  # stage i's job is configs[i - 1]
    measured: dict[str, float] = field(default_factory=dict)  # midpoint: validation accuracy by model


@dataclass
class ChainResult:
    """How a chain ended: its run id, state, each stage's result and the chain's summary."""

    chain_id: str | None
    state: str  # "completed" | "failed" | "cancelled"
    stages: list[RunResult]
    metrics: dict
    error: str | None = None


def check_rerunnable(run: dict) -> dict:
    """A run that can be re-run from its config alone (returned as given): a chain's stage cannot, its
    teacher was the previous stage's student; re-run the chain instead."""
    if run.get("chain_id"):
        raise InvalidParameterError(
            f"Run {run['id']} is stage {run.get('chain_stage')} of the chain {run['chain_id']}: its teacher was "
            f"the previous stage's student, which its config does not name. Re-run the chain {run['chain_id']}."
        )
    return run


# ---- the plan ---------------------------------------------------------------------------------------


def plan_chain(config: JobConfig, pair: Pair | None = None) -> ChainPlan:
    """Validate a chain job and its fit to the pair; returns the stages without training anything."""
    config.validate()
    method = get_method(config.objective)
    if not method.chain:
        raise InvalidParameterError(
            f"The objective {config.objective!r} is a single run, not a chain (chains: "
            f"{', '.join(chain_methods())}). Run it with kdcore.jobs.run_job."
        )
    refuse_in_chain(config)
    pair = pair if pair is not None else resolve_pair(config.pair)
    task = pair.dataset.task if pair.dataset is not None else "classification"
    if task not in method.tasks:
        raise InvalidParameterError(misfit_message(method, task))
    params = config.resolved_terms()[0].params
    if method.name == "ban":
        models = _ban_models(pair, int(params["generations"]))
        return ChainPlan("ban", models, _ban_configs(config, params))
    measured = _measure(config, pair) if params.get("path") == "midpoint" else {}
    models = _ladder_models(pair, method.name, params.get("path", "full"), measured)
    _check_shrinks(pair, models)
    return ChainPlan(method.name, models, _stage_configs(config, method.name, params, models), measured)


def _model(label: str, adapter: ModelAdapter) -> ChainModel:
    return ChainModel(label, adapter, adapter.num_parameters())


def _ladder_models(pair: Pair, method: str, path: str, measured: dict[str, float]) -> list[ChainModel]:
    """Teacher, the assistants the path takes (largest first), the student."""
    if path != "none" and not pair.ladder:
        raise InvalidParameterError(
            f"The pair {pair.name!r} has no student ladder, and {method} trains teacher assistants of the "
            f"ladder's sizes. Use a pair with a ladder (the digits and shapes sample pairs), build the Pair "
            f"with ladder=(assistant adapters, largest first)"
            + (", or run takd with path 'none' (plain KD)." if method == "takd" else ".")
        )
    rungs = [_model(f"assistant {i + 1}", a) for i, a in enumerate(pair.ladder)]
    if path == "midpoint":
        mid = (measured["teacher"] + measured["student alone"]) / 2
        rungs = [min(rungs, key=lambda m: abs(measured[m.label] - mid))]  # ties: the larger one
    elif path == "none":
        rungs = []
    return [_model("teacher", pair.teacher), *rungs, _model("student", pair.student)]


def _check_shrinks(pair: Pair, models: list[ChainModel]) -> None:
    """Refuse an assistant not smaller than the teacher, and any stage that does not shrink."""
    teacher = models[0]
    for m in models[1:]:
        if m.parameters >= teacher.parameters:
            raise InvalidParameterError(
                f"The {m.label} of pair {pair.name!r} ({m.adapter.name}) has {m.parameters:,} parameters, "
                f"not fewer than its teacher's {teacher.parameters:,}: an assistant must be smaller than the "
                f"teacher. Drop it from the ladder, or give the pair a larger teacher."
            )
    sizes = [m.parameters for m in models]
    try:
        takd_path(sizes)
    except InvalidParameterError as exc:
        raise InvalidParameterError(
            f"The chain of pair {pair.name!r} does not shrink at every stage: "
            + " → ".join(f"{m.label} {m.parameters:,}" for m in models)
            + f" parameters. Order Pair.ladder from largest to smallest, each strictly between the student "
            f"and the teacher. ({exc})"
        ) from None


def _measure(config: JobConfig, pair: Pair) -> dict[str, float]:
    """Validation accuracy (the job's validation subset) of the teacher, the student alone (its
    baseline, else the student) and every ladder model, as shipped: what `path` midpoint compares."""
    val = pair.dataset.split("val") if pair.dataset is not None else None
    if val is None:
        raise InvalidParameterError(f"The pair {pair.name!r} has no dataset: path 'midpoint' measures accuracy on it.")
    if config.val_size is not None:
        val = val.subset(config.val_size)
    alone = pair.student_baseline if pair.student_baseline is not None else pair.student
    named = {"teacher": pair.teacher, "student alone": alone}
    named.update({f"assistant {i + 1}": a for i, a in enumerate(pair.ladder)})
    return {k: accuracy(_batched_logits(a, val.inputs, "cpu"), val.targets) for k, a in named.items()}


def _stage_configs(config: JobConfig, method: str, params: dict, models: list[ChainModel]) -> list[JobConfig]:
    """Stage i's job: TAKD classic KD, DGKD with i guides; T and λ from the chain's parameters."""
    out = []
    for i in range(1, len(models)):
        if method == "takd":
            obj, p = "kd", {}
        else:
            obj, p = "dgkd", {"drop_num": int(params["drop_num"]), "guides": i}
        out.append(_stage(config, i, obj, p, f"{models[i - 1].label} → {models[i].label}", params))
    return out


def _stage(config: JobConfig, i: int, objective: str, params: dict, what: str, chain_params: dict) -> JobConfig:
    """One stage's job: the chain's budget, seed + i − 1, no teacher cache (each stage has its own teacher)."""
    return replace(
        config,
        objective=objective,
        params=params,
        temperature=chain_params.get("temperature"),
        lam=chain_params.get("lam"),
        seed=config.seed + i - 1,
        teacher_cache=False,
        cache_top_k=None,
        name=f"{config.name or config.objective} stage {i}: {what}",
    )


def _ban_models(pair: Pair, generations: int) -> list[ChainModel]:
    first = _model("teacher (unused: generation 0 learns from the labels)", pair.teacher)
    return [first, *(_model(f"generation {g}", pair.student) for g in range(generations + 1))]


def _ban_configs(config: JobConfig, params: dict) -> list[JobConfig]:
    """Generation 0 on the labels (ce), then generation k from k − 1 (ban, T = 1)."""
    gen0 = _stage(config, 1, "ce", {}, "generation 0 (labels)", {})
    w = float(params["label_weight"])
    rest = [
        _stage(config, g + 1, "ban", {"label_weight": w}, f"generation {g - 1} → generation {g}", {})
        for g in range(1, int(params["generations"]) + 1)
    ]
    return [gen0, *rest]


# ---- the run ------------------------------------------------------------------------------------------


def run_chain(
    config: JobConfig,
    *,
    store: RunStore | None = None,
    pair: Pair | None = None,
    callback: ChainCallback | None = None,
    cancel: Cancel | None = None,
    run_id: str | None = None,
    executor: Any = None,
) -> ChainResult:
    """Run a chain job (objective takd, dgkd or ban) to its end; every stage is a child run of the
    chain's run in the store (default RunStore()). The callback gets each stage's events with
    "chain_id", "stage" and "stages" added. `run_id`: a queued row to run as the chain (the worker's);
    cancelling the chain's run (`cancel(chain_id)`) stops the stage in progress. Raises before
    anything runs when the plan is refused. executor: an Executor (kdcore.jobs.executors) whose worker
    runs the whole chain, its stages one after another (the callback then gets its "run_done" event)."""
    pair = pair if pair is not None else resolve_pair(config.pair)
    plan = plan_chain(config, pair)
    store = store if store is not None else RunStore()
    if executor is not None:
        return _chain_on_executor(config, executor, store, callback)
    chain_id = run_id if run_id is not None else store.create_run(config, state="running", seed=config.seed)
    lease = store.acquire_lease(chain_id)
    store.update_run(chain_id, state="running", error=None)
    stop = _stop_when(store, chain_id, cancel)
    try:
        results, trained = _run_stages(plan, pair, store, chain_id, callback, stop)
        state, error = _chain_state(results, len(plan.configs))
        summary = chain_summary(plan, results, trained, pair, config)
        _copy_curves(store, results[-1].run_id, chain_id)
        store.update_run(chain_id, state=state, error=error, summary=summary, step=sum(r.step for r in results))
        return ChainResult(chain_id, state, results, summary, error)
    except (Exception, KeyboardInterrupt) as exc:
        store.update_run(chain_id, state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        lease.release()


def _chain_on_executor(
    config: JobConfig, executor: Any, store: RunStore, callback: ChainCallback | None
) -> ChainResult:
    """The chain as one run on an executor; its result read back from the store once it has ended."""
    (chain_id,) = executor.submit([config], store=store)
    (row,) = executor.wait([chain_id], store=store, progress=callback)
    stages = [
        RunResult(r["id"], r["state"], r["summary"] or {}, r["error"], int(r["step"] or 0))
        for r in store.chain_stages(chain_id)
    ]
    return ChainResult(chain_id, row["state"], stages, row["summary"] or {}, row["error"])


def _run_stages(
    plan: ChainPlan,
    pair: Pair,
    store: RunStore,
    chain_id: str,
    callback: ChainCallback | None,
    cancel: Callable[[], bool],
) -> tuple[list[RunResult], list[ModelAdapter]]:
    """Each stage in turn until one does not complete; (results, [first teacher, trained students...])."""
    results: list[RunResult] = []
    trained = [plan.models[0].adapter]
    n = len(plan.configs)
    for i, cfg in enumerate(plan.configs, start=1):
        student = plan.models[i].adapter
        stage_pair = Pair(f"{pair.name} stage {i}", _stage_teacher(plan, trained, i), student, dataset=pair.dataset)
        run_id = store.create_run(cfg, state="running", seed=cfg.seed, chain_id=chain_id, chain_stage=i)
        tagged = _tagged(callback, chain_id, i, n)
        res = run_job(cfg, store=store, run_id=run_id, pair=stage_pair, callback=tagged, cancel=cancel)
        results.append(res)
        if res.state != "completed":
            break
        trained.append(_trained(store, run_id, student, plan.models[i].label))
    return results, trained


def _stage_teacher(plan: ChainPlan, trained: list[ModelAdapter], i: int) -> ModelAdapter:
    """Stage i's teacher: the model trained just before it; for DGKD the stack of all of them."""
    if plan.method != "dgkd":
        return trained[i - 1]
    stack = GuideStack([a.model for a in trained[:i]])
    first = trained[0]
    return wrap(stack, name=f"guides of stage {i}", kind=first.kind, output_size=first.output_size)


def _trained(store: RunStore, run_id: str, architecture: ModelAdapter, label: str) -> ModelAdapter:
    """The stage's final student (its weights read back from the store), frozen in eval mode."""
    adapter = architecture.clone(reinit=False)
    adapter.model.load_state_dict(store.load_student(run_id), strict=True)
    adapter.model.eval()
    adapter.name = f"{label} (run {run_id})"
    return adapter


def _copy_curves(store: RunStore, stage_id: str | None, chain_id: str) -> None:
    """The chain's epoch curves are its last stage's (the final student's): protocols, the leaderboard
    and the run views read a chain like a run."""
    if stage_id is None:
        return
    ep = store.metrics(stage_id, "epoch")
    names = [c for c in ep.columns if c not in ("step", "epoch")]
    rows = [
        ("epoch", int(r["step"]), int(r["epoch"]), n, float(r[n]))
        for _, r in ep.iterrows()
        for n in names
        if r[n] == r[n]  # not NaN
    ]
    store.log_metrics(chain_id, rows)


def _stop_when(store: RunStore, chain_id: str, cancel: Cancel | None) -> Callable[[], bool]:
    """A stage stops when the caller's cancel is set or the chain's run is asked to stop."""

    def stop() -> bool:
        if cancel is not None and (cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())):
            return True
        return store.cancel_requested(chain_id)

    return stop


def _tagged(callback: ChainCallback | None, chain_id: str, stage: int, stages: int) -> ChainCallback | None:
    if callback is None:
        return None

    def tagged(ev: dict) -> None:
        callback({**ev, "chain_id": chain_id, "stage": stage, "stages": stages})

    return tagged


def _chain_state(results: list[RunResult], n: int) -> tuple[str, str | None]:
    last = results[-1]
    if last.state == "completed" and len(results) == n:
        return "completed", None
    state = "cancelled" if last.state == "cancelled" else "failed"
    return state, f"Stage {len(results)} of {n} ended {last.state}: {last.error or ''}".strip()


# ---- the summary --------------------------------------------------------------------------------------


def chain_summary(
    plan: ChainPlan, results: list[RunResult], trained: list[ModelAdapter], pair: Pair, config: JobConfig
) -> dict:
    """The chain's summary: each stage's teacher, student, size and accuracy; the teacher's accuracy;
    the final student's; the measured accuracies of `midpoint`; BAN's ensemble accuracy."""
    stages = []
    for i, res in enumerate(results, start=1):
        m = res.metrics
        stages.append(
            {
                "stage": i,
                "run_id": res.run_id,
                "state": res.state,
                "teacher": plan.models[i - 1].label,
                "student": plan.models[i].label,
                "teacher_parameters": plan.models[i - 1].parameters,
                "student_parameters": plan.models[i].parameters,
                "objective": plan.configs[i - 1].objective,
                "final_val_acc": m.get("final_val_acc"),
                "best_val_acc": m.get("best_val_acc"),
                "teacher_val_acc": m.get("teacher_val_acc"),
            }
        )
    last = stages[-1] if stages else {}
    out = {
        "chain": plan.method,
        "stages": stages,
        "metric": "val_acc",
        "teacher_val_acc": stages[0]["teacher_val_acc"] if stages else None,
        "final_val_acc": last.get("final_val_acc"),
        "best_val_acc": last.get("best_val_acc"),
        "measured": plan.measured,
        **_speed(results),
    }
    if plan.method == "ban" and config.resolved_terms()[0].params["ensemble"] and len(trained) > 2:
        out["ensemble_val_acc"] = _ensemble_accuracy(trained[2:], pair, config)
    return out


def _speed(results: list[RunResult]) -> dict:
    """Steps of all stages and their training speed (steps per second of training, every stage)."""
    steps = sum(r.step for r in results)
    seconds = sum(r.metrics["steps"] / r.metrics["steps_per_s"] for r in results if r.metrics.get("steps_per_s"))
    return {"steps": steps, "steps_per_s": steps / seconds} if seconds > 0 else {"steps": steps}


def _ensemble_accuracy(generations: list[ModelAdapter], pair: Pair, config: JobConfig) -> float:
    """Validation accuracy of the mean softmax of generations 1…k (BAN's ensemble, §13.4a)."""
    from kdcore.losses import ban_ensemble

    assert pair.dataset is not None
    val = pair.dataset.split("val")
    if config.val_size is not None:
        val = val.subset(config.val_size)
    logits = [_batched_logits(g, val.inputs, "cpu") for g in generations]  # each [N, C]
    return accuracy(ban_ensemble(logits), val.targets)
