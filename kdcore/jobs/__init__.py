"""Distillation jobs: the config, the runner, the run store, protocols and background workers."""
from kdcore.jobs.config import OBJECTIVES, ConfigError, JobConfig, LossTerm
from kdcore.jobs.protocols import ProtocolResult, protocol_configs, protocol_table, run_protocol
from kdcore.jobs.runner import RunResult, linear_cka, prepare_run, resolve_pair, run_job
from kdcore.jobs.store import STATES, RunStore, StoreError, default_home
from kdcore.jobs.worker import cancel, compare, get_status, rerun, resume, submit, wait

__all__ = ["JobConfig", "LossTerm", "ConfigError", "OBJECTIVES", "run_job", "prepare_run", "resolve_pair",
           "RunResult", "linear_cka", "RunStore", "StoreError", "STATES", "default_home", "run_protocol",
           "protocol_configs", "protocol_table", "ProtocolResult", "submit", "cancel", "get_status", "wait",
           "compare", "rerun", "resume"]
