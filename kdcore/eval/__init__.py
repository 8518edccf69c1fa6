"""Generation-based evaluation of causal LMs (spec §15.6): quality, size and speed."""

from kdcore.eval.lm_scorecard import LMScorecard, compare, lm_scorecard, parameter_counts, run_scorecard
from kdcore.eval.quality import exact_match, exact_match_scores, normalize_answer, paired_bootstrap, perplexity
from kdcore.eval.speed import SpeedConfig, generation_speed, speed_tables

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
