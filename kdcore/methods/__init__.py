"""The method table: every distillation method once, with its name and aliases, the tasks it fits,
the tested loss functions it calls, its parameters (defaults, types, ranges, help), whether it adds
the hard-label CE by default, its default temperature, a one-line help and its METHODS.md section.

    from kdcore.methods import get_method, register_method, Method, Param
    get_method("attention_transfer").name        # 'at' (aliases resolve)
    [m.name for m in methods_for("causal_lm")]   # ['token', 'attn_kl', 'seqkd', 'hybrid', 'ce']

Adding a method is one `register_method(Method(...))` entry next to its step function (see
classification.py), plus its loss in kdcore.losses. Reading the table imports no torch.
"""

from kdcore.methods.params import KINDS, Param
from kdcore.methods.step import IGNORE_INDEX, Component, StepTensors, label_loss, layer_key
from kdcore.methods.table import (
    ALIASES,
    TASKS,
    Method,
    aliases,
    all_methods,
    canonical_name,
    closest,
    get_method,
    method_names,
    methods_for,
    misfit_message,
    param_problems,
    register_method,
    resolve_params,
    unknown_method_message,
    unknown_param_message,
    unregister_method,
)

# The entries register on import, in this order (the order menus and `methods` list them): keep it.
# isort: off
from kdcore.methods import classification as _classification  # noqa: F401  (kd, dkd, cakd, normkd, ls)
from kdcore.methods import language as _language  # noqa: F401  (token)
from kdcore.methods import onpolicy as _onpolicy  # noqa: F401  (gkd, minillm, distillm)
from kdcore.methods import features as _features  # noqa: F401  (feature_l2, at, attn_kl)
from kdcore.methods import feature_modules as _feature_modules  # noqa: F401  (mgd, famkd)
from kdcore.methods import embedding as _embedding  # noqa: F401  (embed_distill)
from kdcore.methods import strategies as _strategies  # noqa: F401  (clkd, tfkd, ban)
from kdcore.methods import chains as _chains  # noqa: F401  (takd, dgkd)
from kdcore.methods import grown as _grown  # noqa: F401  (byot, education)
from kdcore.methods import curricula as _curricula  # noqa: F401  (ctkd, curriculum)
from kdcore.methods import procedures as _procedures  # noqa: F401  (blockwise, pwkd, zskt)
from kdcore.methods import weight_distill as _weight_distill  # noqa: F401  (weight_distill)
from kdcore.methods import sequence as _sequence  # noqa: F401  (seqkd, hybrid)
from kdcore.methods import baseline as _baseline  # noqa: F401  (ce, listed last)
# isort: on

__all__ = [
    "ALIASES",
    "IGNORE_INDEX",
    "KINDS",
    "TASKS",
    "Component",
    "Method",
    "Param",
    "StepTensors",
    "aliases",
    "all_methods",
    "canonical_name",
    "closest",
    "get_method",
    "label_loss",
    "layer_key",
    "method_names",
    "methods_for",
    "misfit_message",
    "param_problems",
    "register_method",
    "resolve_params",
    "unknown_method_message",
    "unknown_param_message",
    "unregister_method",
]
