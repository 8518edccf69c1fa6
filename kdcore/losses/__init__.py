"""Distillation losses: classification (METHODS.md §1, 3, 4, 5, 12), features and attention (§7).

Every loss is a pure function of tensors, student first and teacher second. Losses that are sums
of parts have a ``*_components`` function returning the parts per sample ([B] tensors); the loss is
a weighted sum of them. Computation is in float32 or wider whatever the input dtype.

Registries of the tested loss functions (plain dicts, name -> function), which the common loss
checks run over:
- ``LOSSES``: classification losses ``kd``, ``dkd``, ``cakd``, ``normkd``, ``ls``;
- ``FEATURE_LOSSES``: ``feature_l2``, ``feature_cosine``, ``attention_transfer``, ``attention_kl``,
  ``attention_mse``.
The training *methods* (names, aliases, parameters, the loss each calls) are the method table,
``kdcore.methods``; a method's step calls these functions and never restates their formulas.
"""
from kdcore.losses.attention import attention_kl_loss, attention_map, attention_mse_loss, attention_transfer_loss
from kdcore.losses.decoupled import RULES, cakd_components, cakd_loss, dkd_components, dkd_loss, strong_set
from kdcore.losses.features import feature_cosine_loss, feature_l2_loss, make_projector
from kdcore.losses.kd import (
                                     kd_components,
                                     kd_loss,
                                     label_smoothing_loss,
                                     label_smoothing_targets,
                                     normkd_components,
                                     normkd_loss,
                                     softmax_t,
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
}

__all__ = [
    "FEATURE_LOSSES", "LOSSES", "RULES",
    "attention_kl_loss", "attention_map", "attention_mse_loss", "attention_transfer_loss",
    "cakd_components", "cakd_loss", "dkd_components", "dkd_loss", "strong_set",
    "feature_cosine_loss", "feature_l2_loss", "make_projector",
    "kd_components", "kd_loss", "label_smoothing_loss", "label_smoothing_targets",
    "normkd_components", "normkd_loss", "softmax_t",
]
