"""Distillation losses: classification (METHODS.md §1, 3, 4, 5, 12), features and attention (§7).

Every loss is a pure function of tensors, student first and teacher second. Losses that are sums
of parts have a ``*_components`` function returning the parts per sample ([B] tensors); the loss is
a weighted sum of them. Computation is in float32 or wider whatever the input dtype.

Registries of the tested loss functions (plain dicts, name -> function), which the common loss
checks run over:
- ``LOSSES``: classification losses ``kd``, ``dkd``, ``cakd``, ``normkd``, ``ls``;
  (multi-label: ``binary_kd_loss``, per-label binary KD, in losses/binary_kd.py);
- ``FEATURE_LOSSES``: ``feature_l2``, ``feature_cosine``, ``attention_transfer``, ``attention_kl``,
  ``attention_mse``, ``embedding_distill`` (pooled sentence embeddings, cosine or MSE).
Training strategies of methods/13 (CLKD, TAKD/DGKD, CTKD and curriculum pacing, BAN, BYOT,
Tf-KD, education distillation) are in ``clkd``, ``assistants``, ``curriculum``, ``self_distill``,
``teacher_free`` and ``education``, re-exported here.
The training *methods* (names, aliases, parameters, the loss each calls) are the method table,
``kdcore.methods``; a method's step calls these functions and never restates their formulas.
"""

from kdcore.losses.assistants import dgkd_choose_dropped, dgkd_loss, takd_path
from kdcore.losses.attention import attention_kl_loss, attention_map, attention_mse_loss, attention_transfer_loss
from kdcore.losses.binary_kd import binary_kd_components, binary_kd_loss
from kdcore.losses.clkd import clkd_components, clkd_loss
from kdcore.losses.curriculum import (
    GlobalTemperature,
    ctkd_lambda,
    ctkd_step,
    ctkd_temperature,
    ctkd_theta_step,
    curriculum_order,
    grad_reverse,
    pacing,
    pool_size,
    warmup_weight,
)
from kdcore.losses.decoupled import RULES, cakd_components, cakd_loss, dkd_components, dkd_loss, strong_set
from kdcore.losses.education import education_kd_loss, grade_of_epoch, grade_partition
from kdcore.losses.embedding import EMBED_LOSSES, embedding_distill_loss
from kdcore.losses.features import feature_cosine_loss, feature_l2_loss, make_projector
from kdcore.losses.gkd import GKD_DIVERGENCES, gkd_loss
from kdcore.losses.kd import (
    kd_components,
    kd_loss,
    label_smoothing_loss,
    label_smoothing_targets,
    normkd_components,
    normkd_loss,
    softmax_t,
)
from kdcore.losses.minillm import minillm_loss
from kdcore.losses.self_distill import ban_components, ban_ensemble, ban_loss, byot_losses, cwtm_loss
from kdcore.losses.teacher_free import (
    SOFTEN,
    tfkd_reg_components,
    tfkd_reg_loss,
    tfkd_self_loss,
    virtual_teacher,
)

LOSSES = {
    "kd": kd_loss,
    "dkd": dkd_loss,
    "cakd": cakd_loss,
    "normkd": normkd_loss,
    "ls": label_smoothing_loss,
}

FEATURE_LOSSES = {
    "feature_l2": feature_l2_loss,
    "feature_cosine": feature_cosine_loss,
    "attention_transfer": attention_transfer_loss,
    "attention_kl": attention_kl_loss,
    "attention_mse": attention_mse_loss,
    "embedding_distill": embedding_distill_loss,
}

__all__ = [
    "EMBED_LOSSES",
    "embedding_distill_loss",
    "FEATURE_LOSSES",
    "LOSSES",
    "RULES",
    "attention_kl_loss",
    "attention_map",
    "attention_mse_loss",
    "attention_transfer_loss",
    "binary_kd_components",
    "binary_kd_loss",
    "cakd_components",
    "cakd_loss",
    "dkd_components",
    "dkd_loss",
    "strong_set",
    "feature_cosine_loss",
    "feature_l2_loss",
    "make_projector",
    "kd_components",
    "kd_loss",
    "label_smoothing_loss",
    "label_smoothing_targets",
    "normkd_components",
    "normkd_loss",
    "softmax_t",
    # training strategies (methods/13)
    "SOFTEN",
    "ban_components",
    "ban_ensemble",
    "ban_loss",
    "byot_losses",
    "clkd_components",
    "clkd_loss",
    "GlobalTemperature",
    "ctkd_lambda",
    "ctkd_step",
    "ctkd_temperature",
    "ctkd_theta_step",
    "curriculum_order",
    "cwtm_loss",
    "dgkd_choose_dropped",
    "dgkd_loss",
    "education_kd_loss",
    "grade_of_epoch",
    "grade_partition",
    "grad_reverse",
    "pacing",
    "pool_size",
    "takd_path",
    "tfkd_reg_components",
    "tfkd_reg_loss",
    "tfkd_self_loss",
    "virtual_teacher",
    "GKD_DIVERGENCES",
    "gkd_loss",
    "minillm_loss",
    "warmup_weight",
]
