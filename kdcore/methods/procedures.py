"""Methods that run as a whole training procedure (Method.procedure; methods/14 §14.3, §14.5, §14.6):
block-wise logit distillation with stepping stones, partial-to-whole KD and zero-shot knowledge
transfer. `kdcore.jobs.procedures` runs them; the step below is what one batch of plain logits
gives (the student's own stone, the base KD against the current sub-teacher, ZSKT's disagreement).
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, flag, lam, temperature
from kdcore.methods.step import Component, StepTensors
from kdcore.methods.table import Method, register_method

BASES = ("kd", "dkd")  # = kdcore.losses.blockwise.BASES
CONNECTORS = ("auto", "conv_bn", "identity")  # = kdcore.jobs.blockwise.CONNECTORS
KL_REDUCTIONS = ("elementwise_mean", "batchmean")  # = kdcore.losses.zskt.KL_REDUCTIONS
TEACHER_INITS = ("pretrained", "scratch")


def _blockwise(b: StepTensors, p: dict) -> list[Component]:
    """The student's stone (N_n = f_S, weight 1); the procedure adds the stepping stones."""
    from kdcore.losses.blockwise import blockwise_components

    _, parts = blockwise_components(
        [b.student_logits],
        b.teacher_logits,
        b.targets,
        temperature=float(p["temperature"]),
        lam=float(p["lam"]),
        base=p["base"],
    )
    return [("stone1", 1.0, parts["stone1"])]


def _pwkd(b: StepTensors, p: dict) -> list[Component]:
    """One student step of stage k: §1 KD from the sub-teacher T_k (the batch's teacher logits)."""
    from kdcore.losses import kd_components
    from kdcore.methods.step import label_loss

    T, lam = float(p["temperature"]), float(p["lam"])
    kl = kd_components(b.student_logits, b.teacher_logits, None, temperature=T)["kl"].mean()
    return [("ce", 1.0 - lam, label_loss(b.task, b.student_logits, b.targets)), ("kl", lam, T * T * kl)]


def _zskt(b: StepTensors, p: dict) -> list[Component]:
    """The student's belief-matching term D on the batch (the AT term needs the generator's inputs)."""
    from kdcore.losses.zskt import belief_divergence

    d = belief_divergence(
        b.student_logits, b.teacher_logits, temperature=float(p["temperature"]), kl_reduction=p["kl_reduction"]
    )
    return [("d", 1.0, d)]


def _pwkd_check(p: dict, where: str) -> list[str]:
    from kdcore.losses.pwkd import check_widths

    try:
        check_widths(p["widths"], where)
    except ValueError as exc:
        return [str(exc)]
    return []


_T = temperature(4.0, "softmax temperature T of the base KD")
_LAM = lam(0.9, "weight λ of the KD term (CE gets 1 − λ)")

register_method(
    Method(
        "blockwise",
        _blockwise,
        "kdcore.losses.blockwise:blockwise_logit_loss",
        "Block-wise logit KD: stepping-stone networks (student blocks, a connector, teacher blocks) all trained each step",
        "methods/14 §14.3",
        aliases=("block_kd", "blockkd"),
        components="kdcore.losses.blockwise:blockwise_components",
        also_calls=("kdcore.losses.blockwise:stepping_stone_logits",),
        source="Yu, Zhang, Chen, Wang, Liu, Tan & Li, IEEE TAI 2024, arXiv 2411.01547",
        procedure="kdcore.jobs.blockwise:run_blockwise",
        task_hints={"causal_lm": "it distils class logits through the teacher's conv stages"},
        params=(
            _T,
            _LAM,
            Param(
                "stages",
                None,
                "{student_module: teacher_module} ending each block, in forward order (unset: the models' feature "
                "layers paired by spatial size)",
                kind="layers",
            ),
            choice("connector", "auto", "φ_i: 1×1 conv + BN (identity when the shapes agree: auto)", CONNECTORS),
            flag("ce_in_stones", True, "every stone gets the base's CE (false: the student only)"),
            choice("base", "kd", "the base loss of every stone: §1 KD or (1 − λ)·CE + λ·DKD (§3)", BASES),
        ),
    )
)

register_method(
    Method(
        "pwkd",
        _pwkd,
        "kdcore.losses:kd_loss",
        "Partial-to-whole KD: weight-sharing sub-teachers of growing width, distilled in stages with a cyclic LR",
        "methods/14 §14.5",
        aliases=("partial_to_whole",),
        also_calls=("kdcore.losses.pwkd:pwkd_schedule", "kdcore.slimmable:slimmable"),
        source="Zhang, Zhang & Sun 2021, arXiv 2109.12507 (widths, stage split, LR shape: our choices)",
        procedure="kdcore.jobs.pwkd:run_pwkd",
        check=_pwkd_check,
        params=(
            _T,
            _LAM,
            Param(
                "widths",
                [0.25, 0.5, 0.75, 1.0],
                "sub-teacher widths r_1 < … < r_K = 1",
                kind="floats",
                low=0.0,
                high=1.0,
                low_open=True,
            ),
            Param("teacher_epochs", 10, "stage 0: epochs training the slimmable teacher (Σ_k CE)", kind="int", low=0),
            Param("teacher_lr", 3e-3, "stage 0: the slimmable teacher's learning rate (Adam)", low=0.0, low_open=True),
            choice(
                "teacher_init",
                "pretrained",
                "stage 0 starts from the teacher's weights (sliced) or from scratch",
                TEACHER_INITS,
            ),
        ),
    )
)

register_method(
    Method(
        "zskt",
        _zskt,
        "kdcore.losses.zskt:zero_shot_losses",
        "Zero-shot KT: a generator maximises teacher–student disagreement; the student learns on its samples only",
        "methods/14 §14.6",
        aliases=("zero_shot",),
        also_calls=("kdcore.losses.zskt:belief_divergence", "kdcore.losses.zskt:zero_shot_schedule"),
        source="Micaelli & Storkey NeurIPS 2019, arXiv 1905.09768 (github.com/polo5/ZeroShotKnowledgeTransfer)",
        procedure="kdcore.jobs.zskt:run_zskt",
        task_hints={"causal_lm": "its generator makes images; a language model's inputs are discrete tokens"},
        params=(
            temperature(1.0, "softmax temperature τ of D (no T² factor)"),
            Param("beta", 250.0, "weight β of the attention-transfer term", low=0.0),
            choice("kl_reduction", "elementwise_mean", "D divided by N·C (the authors') or by N", KL_REDUCTIONS),
            Param(
                "pseudo_batches",
                None,
                "N_iter pseudo-batches z, spread over the epochs (unset: 1000)",
                kind="int",
                low=1,
            ),
            Param("batch", 64, "pseudo-batch size N", kind="int", low=2),
            Param("z_dim", 32, "noise dimension d_z", kind="int", low=1),
            Param("n_g", 1, "generator steps per pseudo-batch", kind="int", low=1),
            Param("n_s", 10, "student steps per pseudo-batch", kind="int", low=1),
            Param("lr_g", 1e-3, "generator learning rate (Adam, cosine to 0)", low=0.0, low_open=True),
            Param("lr_s", 2e-3, "student learning rate (Adam, cosine to 0)", low=0.0, low_open=True),
            Param(
                "at_layers", None, "{student: teacher} AT pairs (unset: feature layers paired by size)", kind="layers"
            ),
            flag("resize", False, "resize AT maps of other sizes (§7) instead of refusing"),
            Param("grad_clip", 5.0, "gradient-norm clip of both players", low=0.0, low_open=True),
        ),
    )
)
