"""Distillation jobs: the config, the runner, the run store, protocols and background workers.

Names load on first use (PEP 562), so `python -m kdcore runs list` does not import torch.
"""
import importlib

_NAMES = {
    "kdcore.jobs.config": ("JobConfig", "LossTerm", "ConfigError", "OBJECTIVES"),
    "kdcore.jobs.runner": ("run_job", "prepare_run", "resolve_pair", "RunResult", "linear_cka"),
    "kdcore.jobs.store": ("RunStore", "StoreError", "STATES", "default_home"),
    "kdcore.jobs.protocols": ("run_protocol", "protocol_configs", "protocol_table", "ProtocolResult"),
    "kdcore.jobs.worker": ("submit", "cancel", "get_status", "wait", "compare", "rerun", "resume"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'kdcore.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
