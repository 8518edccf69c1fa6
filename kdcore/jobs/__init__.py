"""Distillation jobs: the config, the runner, the run store, protocols, the method
leaderboard and background workers.

Names load on first use (PEP 562), so `python -m kdcore runs list` does not import torch. Every
name comes from a kdcore.jobs module listed here (no other package is reached).
"""

import importlib
from typing import Any

_NAMES = {
    "kdcore.jobs.config": ("JobConfig", "LossTerm", "ConfigError", "OBJECTIVES"),
    "kdcore.jobs.runner": ("run_job", "RunResult", "JobCancelled"),
    "kdcore.jobs.prepare": ("prepare_run", "PreparedRun"),
    "kdcore.jobs.resolve": ("resolve_pair", "resolve_device"),
    "kdcore.jobs.pair_source": ("pair_for_config", "student_for_run"),
    "kdcore.jobs.evaluation": ("linear_cka",),
    "kdcore.jobs.store": ("RunStore", "StoreError", "STATES", "default_home"),
    "kdcore.jobs.protocols": (
        "run_protocol",
        "queue_protocol",
        "protocol_configs",
        "protocol_table",
        "protocol_status",
        "ProtocolResult",
        "ProtocolStatus",
    ),
    "kdcore.jobs.leaderboard": ("compare_methods", "LeaderboardResult"),
    "kdcore.jobs.worker": ("submit", "cancel", "get_status", "wait", "compare", "rerun", "resume"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'kdcore.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
