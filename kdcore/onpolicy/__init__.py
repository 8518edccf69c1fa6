"""On-policy distillation for causal LMs (methods/15 §15.3–15.5): GKD's and MiniLLM's settings and
GKD's branch, DistiLLM's adaptive off-policy schedule and replay buffer. The losses are
kdcore.losses.gkd_loss and kdcore.losses.minillm_loss; the job is kdcore/jobs/onpolicy_job.py."""

from kdcore.onpolicy.configs import GKDConfig, MiniLLMConfig, check_sampling, gkd_step_source
from kdcore.onpolicy.distillm import REPLAY_RATIOS, DistiLLMSchedule, ReplayBuffer

__all__ = [
    "REPLAY_RATIOS",
    "DistiLLMSchedule",
    "GKDConfig",
    "MiniLLMConfig",
    "ReplayBuffer",
    "check_sampling",
    "gkd_step_source",
]
