"""The teacher itself: miscalibrated (Guo et al. ICML 2017, arXiv 1706.04599), wrong on much of the
training data (its errors are what the student copies; METHODS §11: err_s ≤ err_t + disagreement),
run in train mode (dropout active: noisy targets), or receiving gradients."""

from __future__ import annotations

import torch
from torch import nn

from kdcore.doctor.context import Context, Skip, fmt
from kdcore.doctor.findings import FigureData, Finding
from kdcore.doctor.streams import confidence, grid_argmin_unimodal, nll_at
from kdcore.metrics import (
    accuracy,
    calibration_error_from_bins,
    confidence_bins,
    predictions,
    reliability_bins,
)

ECE_WARN = 0.10  # expected calibration error at or above this: miscalibrated
WRONG_WARN = 0.20  # teacher error on the training data at or above this: warning
WRONG_ERROR = 0.40  # ... and at or above this: error
_TAU_GRID = [2 ** (k / 8) for k in range(-24, 41)]  # 0.125 .. 32


def _probs_labels(
    ctx: Context, logits: torch.Tensor, targets: torch.Tensor, tau: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration inputs: probabilities [N, K] and labels [N] (multi-label: one binary row per entry)."""
    if ctx.task == "multilabel":
        p = torch.sigmoid(logits.double() / tau).flatten()  # [N*C]
        return torch.stack([1 - p, p], 1), targets.flatten().long()
    rows, y = ctx.flat(logits, targets)
    return torch.softmax(rows.double() / tau, -1), y.long()


def _nll(probs: torch.Tensor, y: torch.Tensor) -> float:
    return float(-probs.gather(1, y[:, None]).clamp_min(1e-300).log().mean())


def _reliability_figure(bins: dict[str, torch.Tensor]) -> FigureData:
    """The teacher's reliability diagram: accuracy, confidence and count per confidence bin."""
    centres = ((bins["lower"] + bins["upper"]) / 2).tolist()
    return FigureData(
        "reliability",
        "Teacher reliability on validation data",
        centres,
        {
            "accuracy": bins["accuracy"].tolist(),
            "confidence": bins["confidence"].tolist(),
            "count": bins["count"].tolist(),
        },
        x_title="confidence",
        y_title="accuracy",
    )


def _bins(ctx: Context, logits: torch.Tensor, y: torch.Tensor, tau: float = 1.0) -> dict[str, torch.Tensor]:
    """Reliability bins of the teacher at τ: LMs streamed over rows (no [N, V] probabilities kept)."""
    if ctx.task == "causal_lm":
        return confidence_bins(*confidence(ctx, logits, y, tau))
    return reliability_bins(*_probs_labels(ctx, logits, y, tau))


def _calibrating_tau(ctx: Context, logits: torch.Tensor, y: torch.Tensor) -> float:
    """The τ of _TAU_GRID with the smallest validation NLL (LMs: NLL(1/τ) is convex, so a binary search)."""
    if ctx.task == "causal_lm":
        return grid_argmin_unimodal(lambda t: nll_at(ctx, logits, y, t), _TAU_GRID)
    labels = _probs_labels(ctx, logits, y)[1]
    nlls = [_nll(_probs_labels(ctx, logits, y, t)[0], labels) for t in _TAU_GRID]
    return _TAU_GRID[min(range(len(nlls)), key=nlls.__getitem__)]


def check_miscalibrated(ctx: Context) -> Finding | None:
    ctx.require("teacher", "dataset")
    x, y = ctx.val_probe
    logits = ctx.logits("teacher", "val")
    bins = _bins(ctx, logits, y)
    ece = calibration_error_from_bins(bins)
    if ece < ECE_WARN:
        return None
    n = bins["count"].sum()
    conf = float((bins["confidence"].nan_to_num(0.0) * bins["count"]).sum() / n)
    acc = float((bins["accuracy"].nan_to_num(0.0) * bins["count"]).sum() / n)
    tau = _calibrating_tau(ctx, logits, y)
    ece_tau = calibration_error_from_bins(_bins(ctx, logits, y, tau))
    over = conf > acc
    fig = _reliability_figure(bins)
    T = ctx.temperature
    extra = (
        f" (your run's T = {fmt(T)} already divides the logits; a T near {fmt(tau * (T or 1))} would "
        f"match the calibrated scale)"
        if T
        else ""
    )
    return Finding(
        "teacher.miscalibrated",
        "warning",
        f"The teacher is {'over' if over else 'under'}-confident: it says {fmt(100 * conf, 3)} % but is "
        f"right {fmt(100 * acc, 3)} % of the time, so its soft labels misstate how sure it should be.",
        {
            "teacher_ece": ece,
            "teacher_mean_confidence": conf,
            "teacher_accuracy": acc,
            "calibrating_temperature": tau,
            "teacher_ece_after_scaling": ece_tau,
        },
        f"Calibrate the teacher before distilling: divide its logits by τ = {fmt(tau)} (temperature "
        f"scaling fitted on validation data brings ECE to {fmt(ece_tau)}){extra}.",
        fig,
    )


def check_wrong(ctx: Context) -> Finding | None:
    if ctx.task == "causal_lm":
        raise Skip("next-token prediction has no single right answer to count errors against")
    ctx.require("teacher", "dataset")
    x, y = ctx.train_probe
    t = ctx.logits("teacher", "train")
    multilabel = ctx.task == "multilabel"
    t_pred = predictions(t, task=ctx.task)  # [N] or bool [N, C]
    wrong = (t_pred != y.bool()).any(1) if multilabel else t_pred != y  # [N]
    err = 1.0 - accuracy(t, y, task=ctx.task, multilabel="exact")
    if err < WRONG_WARN:
        return None
    ev = {"teacher_train_error": err, "samples_checked": int(y.shape[0])}
    msg = ""
    if ctx.student is not None and bool(wrong.any()):
        s = ctx.logits("student", "train")
        s_pred = predictions(s, task=ctx.task)
        same = (s_pred == t_pred).all(1) if multilabel else s_pred == t_pred
        copied = float(same[wrong].double().mean())
        ev["student_copies_teacher_errors"] = copied
        msg = f" The student repeats {fmt(100 * copied, 3)} % of those mistakes."
    lam = next((t_.params["lam"] for t_ in ctx.terms if "lam" in t_.params), None)
    weight = (
        f"lower lam (now {fmt(lam, 2)}) to about 0.5 so the labels can correct the teacher"
        if lam is not None
        else "raise ce_weight so the labels can correct the teacher"
    )
    return Finding(
        "teacher.wrong",
        "error" if err >= WRONG_ERROR else "warning",
        f"The teacher is wrong on {fmt(100 * err, 3)} % of the training data, and those errors are what "
        f"the student is taught.{msg}",
        ev,
        f"Use a better teacher (train or fine-tune it on this data: check its label mapping and inputs "
        f"first), or {weight}.",
        None,
    )


def _has_stochastic(model: nn.Module) -> bool:
    return any(
        isinstance(
            m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.modules.batchnorm._BatchNorm)
        )
        and m.training
        for m in model.modules()
    )


def check_train_mode(ctx: Context) -> Finding | None:
    recorded = ctx.metric("epoch", "teacher_training")
    if recorded is not None:
        share = float((recorded > 0).mean())
        if share == 0:
            return None
        return Finding(
            "teacher.train_mode",
            "error",
            "The teacher ran in train mode: dropout (or batch-norm updates) made its soft labels noisy "
            "and different at every step.",
            {"epochs_in_train_mode": int((recorded > 0).sum()), "epochs_recorded": int(len(recorded))},
            "Call teacher.eval() before training, and run it under torch.no_grad(); the workbench's runner "
            "does both inside a scope (kdcore.adapters.eval_mode).",
            None,
        )
    ctx.require("teacher")
    model = ctx.teacher.model
    if not _has_stochastic(model):
        return None
    ctx.require("dataset")
    x = ctx.train_probe[0][:32]
    with torch.no_grad(), torch.random.fork_rng():
        a, b = model(x), model(x)
    a = getattr(a, "logits", a)
    b = getattr(b, "logits", b)
    diff = float((a.float() - b.float()).abs().max())
    return Finding(
        "teacher.train_mode",
        "error",
        "The teacher is in train mode: with dropout active, two passes over the same batch disagree, so "
        "the run (which recorded no evidence of the teacher's mode) may have distilled noisy targets.",
        {"teacher_training": True, "max_logit_change_between_passes": diff},
        "Call teacher.eval() before training (and keep it under torch.no_grad()); the workbench's runner "
        "does this inside a scope and records metric 'teacher_training'.",
        None,
    )


def check_gradients(ctx: Context) -> Finding | None:
    with_grad = ctx.metric("epoch", "teacher_params_with_grad")
    logits_grad = ctx.metric("step", "teacher_logits_grad")
    if with_grad is None and logits_grad is None:
        raise Skip(
            "the run recorded no evidence of teacher gradients (metrics teacher_params_with_grad, teacher_logits_grad)"
        )
    n = float(with_grad.max()) if with_grad is not None else 0.0
    lg = float(logits_grad.max()) if logits_grad is not None else 0.0
    if n == 0 and lg == 0:
        return None
    return Finding(
        "teacher.gradients",
        "error",
        "The teacher received gradients: the distillation loss back-propagated into it, so it may have "
        "drifted towards the student (and training cost twice the memory).",
        {"teacher_params_with_grad": n, "teacher_logits_required_grad": bool(lg)},
        "Compute the teacher's outputs under torch.no_grad() (or .detach() them) and freeze it with "
        "teacher.requires_grad_(False); only the student's parameters belong in the optimiser.",
        None,
    )
