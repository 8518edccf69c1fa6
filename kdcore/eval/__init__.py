"""Generation-based evaluation of causal LMs (spec §15.6): quality, size and speed."""

from importlib import import_module
from typing import Any

# Loaded on first use: the CLI registers `scorecard` from kdcore.eval.cli_scorecard at start-up, which must
# not import torch.
_HOMES = {
    "lm_scorecard": ("LMScorecard", "compare", "lm_scorecard", "parameter_counts", "run_scorecard"),
    "quality": ("exact_match", "exact_match_scores", "normalize_answer", "paired_bootstrap", "perplexity"),
    "speed": ("SpeedConfig", "generation_speed", "speed_tables"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"kdcore.eval.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'kdcore.eval' has no attribute {name!r}")


__all__ = [
    "LMScorecard",
    "SpeedConfig",
    "compare",
    "exact_match",
    "exact_match_scores",
    "generation_speed",
    "lm_scorecard",
    "normalize_answer",
    "paired_bootstrap",
    "parameter_counts",
    "perplexity",
    "run_scorecard",
    "speed_tables",
]
