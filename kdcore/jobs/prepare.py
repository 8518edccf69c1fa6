"""Everything a run needs, checked before it starts: the config, its fit to the pair, the data and
the step plan. `prepare_run` trains nothing and changes no model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kdcore.data.base import SplitData
from kdcore.jobs.config import JobConfig, LossTerm
from kdcore.jobs.objectives import feature_layers, feature_shape_problems, fit_problems, needs_attention
from kdcore.jobs.pair_source import pair_for_config
from kdcore.jobs.performance import run_problems
from kdcore.jobs.resolve import resolve_device
from kdcore.jobs.sequence_data import sequence_data
from kdcore.jobs.strategy_jobs import prepare_strategy
from kdcore.jobs.student_init import check_student_init
from kdcore.jobs.teacher_cache import tensor_fingerprint
from kdcore.pairs import Pair


@dataclass(frozen=True)
class PreparedRun:
    """What `prepare_run` found: the pair, device, loss terms, data splits and the step plan."""

    pair: Pair
    device: torch.device
    terms: list[LossTerm]  # the objective's resolved loss terms
    s_layers: list[str]  # student layers the terms read features from
    t_layers: list[str]  # teacher layers the terms read features from
    train: SplitData  # SplitData of the training samples used (subset when train_size is set)
    val: SplitData  # SplitData of the validation samples used
    task: str  # "classification" | "multilabel" | "causal_lm"
    fingerprint: str  # hash of the train and val tensors
    steps_per_epoch: int
    total_steps: int  # epochs × steps_per_epoch, capped by max_steps
    checkpoint_epochs: frozenset[int]  # epochs whose end saves student weights and probe metrics


def _misfit(config: JobConfig, problems: list[str]) -> ValueError:
    return ValueError(
        "The objective does not fit the pair " + repr(config.pair) + ":\n" + "\n".join(f"  - {p}" for p in problems)
    )


def step_plan(config: JobConfig, n_train: int) -> tuple[int, int, frozenset[int]]:
    """(steps per epoch, total steps, checkpoint epochs) for `n_train` training samples."""
    spe = math.ceil(n_train / config.batch_size)
    total = config.epochs * spe if config.max_steps is None else min(config.max_steps, config.epochs * spe)
    last_epoch = math.ceil(total / spe)
    k = min(config.checkpoints, last_epoch)
    ckpt = frozenset(round(e) for e in np.linspace(last_epoch, 1, k)) if k else frozenset()
    return spe, total, ckpt


def _check_fit(config: JobConfig, pair: Pair, task: str) -> None:
    """Refuses an objective that does not fit the task, the models' kinds or their layer names."""
    problems = fit_problems(
        config,
        task,
        pair.student.kind,
        pair.teacher.kind,
        list(pair.student.layer_names()),
        list(pair.teacher.layer_names()),
    )
    if problems:
        raise _misfit(config, problems)


def _check_feature_shapes(
    config: JobConfig,
    pair: Pair,
    terms: list[LossTerm],
    inputs: torch.Tensor,
    s_layers: list[str],
    t_layers: list[str],
) -> None:
    """Refuses feature terms whose layers' shapes do not fit: a probe pass over the first 2 training
    inputs (detached copies; the pair's models are not changed)."""
    probe = inputs[:2]
    problems = feature_shape_problems(
        terms, pair.student.capture(probe, s_layers), pair.teacher.capture(probe, t_layers)
    )
    if problems:
        raise _misfit(config, problems)


def _check_attentions(config: JobConfig, pair: Pair, inputs: torch.Tensor) -> None:
    """Refuses an attention objective when a model returns no attention weights (a probe on 2 inputs)."""
    problems = [
        f"the objective matches attention maps, but the {role} ({adapter.name}) returns none: it needs "
        f"transformers that return attention weights (Hugging Face models load with eager attention)"
        for role, adapter in (("student", pair.student), ("teacher", pair.teacher))
        if adapter.attentions(inputs[:2]) is None
    ]
    if problems:
        raise _misfit(config, problems)


def _check_options(config: JobConfig, pair: Pair, device: torch.device, terms: list[LossTerm]) -> None:
    """Refuses memory and speed options the device or the pair cannot honour (kdcore.jobs.performance)."""
    problems = run_problems(config, pair.student, pair.teacher, device, needs_attention(terms))
    if problems:
        raise ValueError(
            "The job's precision/attention/checkpointing options do not fit:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def prepare_run(config: JobConfig, pair: Pair | None = None) -> PreparedRun:
    """Validate the config and its fit to the pair without training; returns what the run needs.

    Raises ConfigError (every problem of the config) or ValueError (the objective does not fit the
    pair, the pair name is unknown, or a user's own pair's directories or data are refused: see
    kdcore.jobs.pair_source.pair_for_config).
    """
    config.validate()
    device = resolve_device(config.device)
    pair = pair if pair is not None else pair_for_config(config)
    ds = pair.dataset
    if ds is None:
        raise ValueError(
            f"The pair {pair.name!r} has no dataset, and a run trains and validates on its pair's "
            f"dataset. Build the Pair with dataset=... (a kdcore.data.Dataset)."
        )
    terms = config.resolved_terms()
    s_layers, t_layers = feature_layers(terms)
    _check_fit(config, pair, ds.task)
    check_student_init(config, pair)  # from_teacher on a registered pair: a shallower copy of its teacher
    _check_options(config, pair, device, terms)
    ds = sequence_data(config, pair, ds)  # seqkd/hybrid: prompt/completion rows (methods/15)
    train, val = ds.split("train"), ds.split("val")
    prompt_len = train.extras.get("prompt_len")  # [N] on prompt/completion rows (methods/15), else None
    terms, s_layers = prepare_strategy(config, pair, ds.task, train.inputs, terms, s_layers, prompt_len)
    if s_layers:
        _check_feature_shapes(config, pair, terms, train.inputs, s_layers, t_layers)
    if needs_attention(terms):
        _check_attentions(config, pair, train.inputs)
    if config.train_size is not None:
        train = train.subset(config.train_size)
    if config.val_size is not None:
        val = val.subset(config.val_size)
    spe, total, ckpt = step_plan(config, train.inputs.shape[0])
    return PreparedRun(
        pair=pair,
        device=device,
        terms=terms,
        s_layers=s_layers,
        t_layers=t_layers,
        train=train,
        val=val,
        task=ds.task,
        steps_per_epoch=spe,
        total_steps=total,
        checkpoint_epochs=ckpt,
        fingerprint=tensor_fingerprint(train.inputs, train.targets, val.inputs, val.targets),
    )
