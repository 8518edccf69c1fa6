"""Runs of the sequence-level methods (methods/15 §15.1 seqkd, §15.2 hybrid).

    ds = sequence_data(config, pair, pair.dataset)   # in prepare_run (kdcore.jobs.sequence_data)
    job_class("seqkd")                               # SeqKDJob; "hybrid": HybridJob

The data are prompt/completion rows (kdcore.data.prompts): a pair whose dataset already is one
(a user's JSONL/CSV with prompt and completion fields), or tinylang's copy task for the tinylang
pair. Before the first step, the teacher generates ŷ for every training prompt once
(kdcore.sequence.cached_targets: cached in the run store's ``cache/`` under the teacher's weights,
the prompts and the generation settings); `max_new_tokens` is capped by the teacher's context.
SeqKD trains on x ⧺ ŷ; hybrid trains on the data x ⧺ y and, in the same step, on x ⧺ ŷ. Validation
stays on the reference completions (the student's CE on x ⧺ y). Metrics at epoch 0: seqkd_truncated
(share of ŷ without a stop token), seqkd_mean_len, seqkd_from_cache, seqkd_gen_s, seqkd_max_new_tokens.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from torch import Tensor

from kdcore.jobs.job import TRAIN_PROBE_SEQUENCES, _Job
from kdcore.jobs.lm_eval import teacher_validation
from kdcore.jobs.sequence_data import sequence_data
from kdcore.methods import canonical_name
from kdcore.methods.sequence import SEQ_LOGITS, SEQ_TARGETS

if TYPE_CHECKING:
    from kdcore.jobs.config import JobConfig


class SeqKDJob(_Job):
    """The runner's job on x ⧺ ŷ: the teacher's completions of the training prompts."""

    def __init__(self, config: JobConfig, prep: Any, report: Any, *, resume: bool) -> None:
        cached = bool(config.teacher_cache)
        super().__init__(dataclasses.replace(config, teacher_cache=False), prep, report, resume=resume)
        if cached:  # a recipe's default: logits cached on the data rows do not apply to ŷ
            self._notice("teacher_cache is off for this run: it trains on the teacher's generated completions.")
        self.seq_x, self.seq_y = self._teacher_rows(prep)
        self._use_rows()
        self._refit_teacher_train()

    def _refit_teacher_train(self) -> None:
        """The teacher's fit on the rows now trained on (ŷ rows may be shorter than the data rows)."""
        x, y = self.train_x[:TRAIN_PROBE_SEQUENCES], self.train_y[:TRAIN_PROBE_SEQUENCES]
        self.teacher_train = teacher_validation(self.teacher, x, y, self.task, self.device)

    def _use_rows(self) -> None:
        self.train_x, self.train_y, self.train_mask = self.seq_x, self.seq_y, None

    def _settings(self, prompts: list[list[int]], info: dict) -> dict[str, Any]:
        from kdcore.generation import context_length

        p = self.terms[0].params
        n_ctx = context_length(self.teacher.model)
        longest = max(len(x) for x in prompts)
        max_new = int(p["max_new_tokens"]) if n_ctx is None else min(int(p["max_new_tokens"]), n_ctx - longest)
        if max_new < 1:
            raise ValueError(
                f"The training prompts reach {longest} tokens, the teacher's whole context ({n_ctx}): no room to "
                f"generate. Shorten the prompts."
            )
        return dict(
            decoding=p["decoding"],
            num_beams=int(p["num_beams"]),
            max_new_tokens=max_new,
            temperature=float(p["gen_temperature"]),
            top_k=int(p["top_k"]),
            top_p=float(p["top_p"]),
            seed=int(self.cfg.seed),
            eos_id=info["eos_id"],
            pad_id=int(info["pad_id"]),
        )

    def _teacher_rows(self, prep: Any) -> tuple[Tensor, Tensor]:
        """(inputs, targets) [N, L] of x ⧺ ŷ, the teacher's targets generated once (or read from the cache)."""
        from kdcore.adapters.base import eval_mode
        from kdcore.data.prompts import sft_split, split_prompts
        from kdcore.sequence import cached_targets

        prompts, _ = split_prompts(prep.train)
        info = sequence_data(self.cfg, prep.pair, prep.pair.dataset).load_report or {}
        settings = self._settings(prompts, info)
        t0 = time.perf_counter()
        cache_dir = None if self.store is None else self.store.root / "cache"
        with eval_mode(self.teacher.model):
            ts = cached_targets(cache_dir, self.teacher, prompts, **settings)
        split = sft_split(ts.prompts, ts.completions, settings["pad_id"])
        self.log.add(
            "epoch",
            0,
            0,
            {
                "seqkd_truncated": sum(ts.truncated) / len(ts.truncated),
                "seqkd_mean_len": sum(map(len, ts.completions)) / len(ts.completions),
                "seqkd_from_cache": float(ts.from_cache),
                "seqkd_gen_s": time.perf_counter() - t0,
                "seqkd_max_new_tokens": float(settings["max_new_tokens"]),
            },
        )
        return split.inputs.to(self.device), split.targets.to(self.device)


class HybridJob(SeqKDJob):
    """Trains on the data x ⧺ y (token term) and on x ⧺ ŷ (sentence term) in each step."""

    def _use_rows(self) -> None:
        if self.terms[0].params.get("token_targets") == "teacher":  # the token term on ŷ too (§15.2 choice 2)
            self.train_x, self.train_y, self.train_mask = self.seq_x, self.seq_y, None
        # else the data rows stay the batch; ŷ rows join through batch.extras

    def _step_tensors(self, idx: Tensor) -> Any:
        batch = super()._step_tensors(idx)
        seq_logits, _ = self.student.forward_features(self.seq_x[idx], [])  # [B, L', V] with graph
        batch.extras = {SEQ_LOGITS: seq_logits, SEQ_TARGETS: self.seq_y[idx]}
        return batch


def sequence_job_class(objective: str) -> type[_Job]:
    return HybridJob if canonical_name(objective) == "hybrid" else SeqKDJob
