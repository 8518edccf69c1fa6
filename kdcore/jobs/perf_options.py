"""The memory and speed fields of a job (precision, grad_accum, grad_checkpointing,
attn_implementation, lm_chunked, shard): their allowed values and checks. No torch import, so validating a
config stays light; what the options do is in ``kdcore.jobs.performance``."""

from __future__ import annotations

from typing import Any

PRECISIONS = ("fp32", "bf16")
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa")
SHARDS = ("none", "full")  # "full": the student's parameters, gradients and optimizer state sharded (FSDP)
SHARD_NEEDS_PROCESSES = (
    "'shard: full' shards the student over several processes, but this job runs in one. Start it with "
    "--devices N (N >= 2), or torchrun --standalone --nproc-per-node N -m kdcore distill ... --shard full; "
    "or use --shard none."
)


def option_problems(cfg: Any) -> list[str]:
    """Problems with the memory and speed fields of a JobConfig (for JobConfig.problems)."""
    p: list[str] = []
    if cfg.precision not in PRECISIONS:
        p.append(f"'precision' must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    if isinstance(cfg.grad_accum, bool) or not isinstance(cfg.grad_accum, int) or not 1 <= cfg.grad_accum <= 4096:
        p.append(
            f"'grad_accum' must be an integer in [1, 4096] (micro-batches per optimizer step); got {cfg.grad_accum!r}"
        )
    elif (
        isinstance(cfg.batch_size, int)
        and not isinstance(cfg.batch_size, bool)
        and 1 <= cfg.batch_size < cfg.grad_accum
    ):
        p.append(
            f"'grad_accum' ({cfg.grad_accum}) splits each batch of 'batch_size' ({cfg.batch_size}) samples into "
            f"micro-batches, so it must be at most batch_size; raise batch_size or lower grad_accum"
        )
    for name in ("grad_checkpointing", "lm_chunked"):
        if not isinstance(getattr(cfg, name), bool):
            p.append(f"'{name}' must be true or false; got {getattr(cfg, name)!r}")
    if cfg.attn_implementation not in ATTN_IMPLEMENTATIONS:
        p.append(
            f"'attn_implementation' must be one of {', '.join(ATTN_IMPLEMENTATIONS)}; got {cfg.attn_implementation!r}"
        )
    return p + shard_problems(cfg)


def shard_problems(cfg: Any) -> list[str]:
    """Problems with 'shard' (kdcore.jobs.fsdp): its value, and that only Hugging Face students shard."""
    if cfg.shard not in SHARDS:
        return [f"'shard' must be one of {', '.join(SHARDS)}; got {cfg.shard!r}"]
    if cfg.shard == "full" and not cfg.teacher:
        return [
            f"'shard: full' shards a Hugging Face student's transformer layers over the processes (FSDP), but "
            f"this job distils the registered pair {cfg.pair!r}, whose student is not one. Use your own "
            f"directories (--teacher DIR --student DIR --data FILE), or --shard none (plain data-parallel, --devices N)"
        ]
    return []
