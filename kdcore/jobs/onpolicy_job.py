"""On-policy distillation runs of causal LMs (methods/15 §15.3 GKD, §15.4 MiniLLM, §15.5 DistiLLM).

The runner's job, with each step's sequences chosen by the method:

- prompts (kdcore.jobs.sequence_data): on prompt/completion records (a JSONL/CSV file with prompt and
  completion fields, tinylang's copy task with prompts=records) each row's own prompt, left-padded for
  generation, and its reference completion as the data completion (the §15.0 mask; `max_new_tokens`
  capped so that the longest prompt + completion fits the context); on a plain text corpus
  (prompts=window, or auto without records) the first `prompt_tokens` tokens of each training
  sequence, the data completion being the `max_new_tokens` tokens after them (positions masked where
  the data has no next token);
- GKD: one u ~ U[0, 1) per step from numpy's Generator(seed): u < λ → the student samples the
  completions; otherwise the teacher does (seq_kd) or the data completions are used;
- MiniLLM: every step samples from α·teacher + (1 − α)·student (the mixture module below);
- DistiLLM: `DistiLLMSchedule.source` → generate (and push to the replay buffer) / replay / data;
  φ moves with the validation loss at every evaluation (the one before training is the reference).

Generation is kdcore.generation.generate (sampling seeded by (seed, step)); both models then run
teacher-forced on the same ids. Each step logs its source (`source_<name>` = 1), `onpolicy` (1 when
the student generated the batch) and `onpolicy_share` (the share of such steps so far); DistiLLM logs
`distillm_phi` per evaluation. A resume continues exactly: GKD's draws are replayed to the step,
DistiLLM's φ, L_ref, generators and buffer are saved beside the resume state (`onpolicy_state.pt`,
read with weights_only). Checks before anything runs: kdcore/jobs/onpolicy_checks.py (in prepare_run).
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter, eval_mode
from kdcore.jobs.config import JobConfig
from kdcore.jobs.job import _SEED_MOD, _Job, _NonFiniteLoss
from kdcore.jobs.objectives import StepTensors, compute_loss
from kdcore.jobs.onpolicy_checks import generation_problems, model_context  # noqa: F401  (re-exported)
from kdcore.methods import IGNORE_INDEX
from kdcore.onpolicy import DistiLLMSchedule, ReplayBuffer, gkd_step_source

ONPOLICY_FILE = "onpolicy_state.pt"  # DistiLLM's resume state beside the runner's
STUDENT_SOURCES = ("student", "generate")  # sources where the batch is the student's own samples


class MixtureSampler(nn.Module):
    """Logits of log(α·softmax(z_t/τ) + (1 − α)·softmax(z_s/τ)): sampling from it at temperature 1 draws
    from MiniLLM's p̃ (eq. 4). Holds both models as submodules (never changed); equal-length prompts."""

    def __init__(self, student: nn.Module, teacher: nn.Module, alpha: float, tau: float, context: int | None) -> None:
        super().__init__()
        self.student, self.teacher, self.alpha, self.tau = student, teacher, alpha, tau
        if context is not None:
            self.context_length = context

    def forward(self, ids: Tensor) -> Tensor:
        from kdcore.adapters.base import _unwrap_logits

        return self.mix(_unwrap_logits(self.student(ids)), _unwrap_logits(self.teacher(ids)))

    def mix(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        """[..., V] log-probabilities of the mixture at temperature τ."""
        q = torch.log_softmax(student_logits.float() / self.tau, -1)
        p = torch.log_softmax(teacher_logits.float() / self.tau, -1)
        if self.alpha == 0.0:
            return q
        return torch.logaddexp(p + math.log(self.alpha), q + math.log1p(-self.alpha))


class CachedMixtureSampler(MixtureSampler):
    """The mixture over models that have `forward_cached` (the tinylang transformers): one cache each."""

    def forward_cached(self, ids: Tensor, positions: Tensor, key_mask: Tensor, past: Any = None) -> tuple[Tensor, Any]:
        ps, pt = past if past is not None else (None, None)
        zs, ps = self.student.forward_cached(ids, positions, key_mask, ps)  # type: ignore[operator]
        zt, pt = self.teacher.forward_cached(ids, positions, key_mask, pt)  # type: ignore[operator]
        return self.mix(zs, zt), (ps, pt)


def mixture_sampler(
    student: nn.Module, teacher: nn.Module, alpha: float, tau: float, context: int | None
) -> MixtureSampler:
    """MiniLLM's sampling model: with a key/value cache when both models have one."""
    cached = all(callable(getattr(m, "forward_cached", None)) for m in (student, teacher))
    return (CachedMixtureSampler if cached else MixtureSampler)(student, teacher, alpha, tau, context)


class OnPolicyJob(_Job):
    """The runner's job whose batches are generated, replayed or read as the method says (module docstring)."""

    def __init__(self, config: JobConfig, prep: Any, report: Any, *, resume: bool) -> None:
        self.term = prep.terms[0]  # prepare_run checked it: one term, generation fits (onpolicy_checks)
        self.kind, p = self.term.name, self.term.params
        self.context = model_context(prep.pair.student)
        self.u_rng = np.random.default_rng(config.seed)  # GKD's branch draws
        self.counts: dict[str, int] = {}
        self.schedule: DistiLLMSchedule | None = None
        self.buffer: ReplayBuffer | None = None
        if self.kind == "distillm":
            self._build_distillm(config, prep, p)
        super().__init__(config, prep, report, resume=resume)
        self.eos, self.pad = _special_ids(self.student)
        self.prompt_len = _record_prompt_len(p, prep.train.extras)  # [N] (records) or None (windows)
        if self.prompt_len is not None:
            self.eos, self.pad = _record_ids(self.cfg, prep, self.eos, self.pad)
        if resume and self.kind == "gkd":
            self.u_rng.random(self.step)  # the draws of the steps already done

    def _build_distillm(self, config: JobConfig, prep: Any, p: dict) -> None:
        self.schedule = DistiLLMSchedule(
            prep.total_steps,
            init_phi=p["init_phi"],
            step=p["phi_step"],
            loss_eps=p["loss_eps"],
            capacity=p["capacity"],
            replay_ratio=p["replay_ratio"],
            seed=config.seed,
        )
        self.buffer = ReplayBuffer(p["capacity"])
        self.replay_rng = np.random.default_rng((config.seed + 1) % _SEED_MOD)

    # -- where a step's sequences come from --
    def _source(self) -> str:
        p = self.term.params
        if self.kind == "minillm":
            return "student"
        if self.kind == "gkd":
            return gkd_step_source(float(self.u_rng.random()), p["lmbda"], p["seq_kd"])
        assert self.schedule is not None and self.buffer is not None
        return self.schedule.source(self.step + 1, len(self.buffer))

    def _sequences(self, idx: Tensor, source: str) -> tuple[Tensor, Tensor]:
        """(ids [B, P + N], targets [B, P + N]: next ids on completion positions, -100 elsewhere)."""
        if source == "replay":
            assert self.buffer is not None
            d = self.buffer.sample(len(idx), self.replay_rng)
            return d["ids"].to(self.device), d["targets"].to(self.device)
        if source == "data":
            return self._data_sequences(idx)
        ids, targets = self._generate(idx, source)
        if self.buffer is not None:
            self.buffer.push({"ids": ids, "targets": targets})
        return ids, targets

    def _data_sequences(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        if self.prompt_len is not None:  # records: x ⧺ y ⧺ pad with targets on the completion only (§15.0)
            return self.train_x[idx], self.train_y[idx]
        P, N = self.term.params["prompt_tokens"], self.term.params["max_new_tokens"]
        ids = self.train_x[idx][:, : P + N]
        targets = self.train_y[idx][:, : P + N].clone()
        targets[:, : P - 1] = IGNORE_INDEX  # no prompt token is a target
        targets[:, -1] = IGNORE_INDEX  # the token after the window is not in the input
        if self.train_mask is not None:
            nxt = torch.nn.functional.pad(self.train_mask[idx][:, 1 : P + N], (0, 1))  # [B, P + N] next is real
            targets = torch.where(nxt.bool(), targets, torch.full_like(targets, IGNORE_INDEX))
        return ids, targets

    def _generate(self, idx: Tensor, source: str) -> tuple[Tensor, Tensor]:
        from kdcore.generation import GenerationConfig, generate

        p = self.term.params
        prompt_ids, mask = self._prompts(idx)  # [B, P] left-padded, [B, P] or None
        P, N = prompt_ids.shape[1], self._new_tokens()
        model: Any = self.teacher if source == "teacher" else self.student
        tau, top_k, top_p = p["sample_temperature"], p["top_k"], p["top_p"]
        if self.kind == "minillm":
            model, tau = mixture_sampler(self.student.model, self.teacher.model, p["mix_alpha"], tau, self.context), 1.0
        cfg = GenerationConfig(
            max_new_tokens=N, do_sample=True, temperature=tau, top_k=top_k, top_p=top_p, seed=self._sample_seed()
        )
        res = generate(model, prompt_ids, mask, config=cfg, eos_id=self.eos, pad_id=self.pad)
        ids, targets = res.sequences, res.targets()
        if mask is not None:  # the models then run without a mask: each prompt back at column 0, pads after
            ids, targets = right_align(ids, targets, mask, self.pad)
        width = P + N - ids.shape[1]  # HF generate stops early when every row has stopped
        ids = torch.nn.functional.pad(ids, (0, width), value=self.pad)
        targets = torch.nn.functional.pad(targets, (0, width), value=IGNORE_INDEX)
        return ids, targets

    def _prompts(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        """The batch's prompts: (ids [B, P], mask [B, P] or None), left-padded records or windows."""
        if self.prompt_len is None:
            P = self.term.params["prompt_tokens"]
            mask = None if self.train_mask is None else self.train_mask[idx][:, :P]  # generate refuses padded prompts
            return self.train_x[idx][:, :P], mask
        from kdcore.data.prompts import pad_prompts

        rows, lens = self.train_x[idx].tolist(), self.prompt_len[idx.cpu()].tolist()
        ids, mask = pad_prompts([r[:n] for r, n in zip(rows, lens)], self.pad)
        return ids.to(self.device), mask.to(self.device)

    def _new_tokens(self) -> int:
        """max_new_tokens, capped on records so that the longest prompt + completion fits the context."""
        n = int(self.term.params["max_new_tokens"])
        if self.prompt_len is None or self.context is None:
            return n
        return max(1, min(n, self.context - int(self.prompt_len.max())))

    def _sample_seed(self) -> int:
        return (self.cfg.seed * 1_000_003 + self.step + 1) % _SEED_MOD

    # -- one step --
    def _train_step(self, idx: Tensor) -> tuple[dict[str, float], dict[str, float]]:
        source = self._source()
        ids, targets = self._sequences(idx, source)  # [B, P + N] ×2
        s_logits = self.student.forward_features(ids, [])[0]  # [B, P + N, V]
        if self._check_teacher_mode:  # evidence for the doctor: the mode the teacher really ran in
            self._check_teacher_mode = False
            self._teacher_training = float(any(m.training for m in self.teacher.model.modules()))
        with eval_mode(self.teacher.model, no_grad=True):
            t_logits = self.teacher.forward_features(ids, [])[0].detach()
        batch = StepTensors(self.task, s_logits, t_logits, targets, projectors=self.projectors)
        batch.step, batch.epoch = self.step, self.epoch  # where the run is (schedules, warm-ups)
        batch.total_steps, batch.epochs = self.total_steps, self.cfg.epochs
        terms, ce_weight, logged = self._scheduled()
        loss, comps = compute_loss(terms, ce_weight, batch)
        vals = torch.stack([loss.detach().float(), *(c.detach().float() for c in comps.values())]).tolist()
        if not math.isfinite(vals[0]):
            raise _NonFiniteLoss(self.step + 1, self.epoch, "NaN" if math.isnan(vals[0]) else "infinite", self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        lr = self._optimise()
        self.counts[source] = self.counts.get(source, 0) + 1
        return dict(zip(["loss", *comps], vals)), {"lr": lr, **logged, **self._source_metrics(source)}

    def _source_metrics(self, source: str) -> dict[str, float]:
        done = sum(self.counts.values())
        student = sum(self.counts.get(s, 0) for s in STUDENT_SOURCES)
        return {"onpolicy": float(source in STUDENT_SOURCES), "onpolicy_share": student / done, f"source_{source}": 1.0}

    # -- evaluation: DistiLLM's φ follows the validation loss --
    def _evaluate(self) -> dict[str, float]:
        values = super()._evaluate()
        if self.schedule is not None:
            values["distillm_phi"] = self.schedule.update(values["val_loss"])
        return values

    # -- resume: the source counts, and DistiLLM's φ, L_ref, u-generator, buffer and replay generator --
    def _save_resume(self) -> None:
        super()._save_resume()
        if self.schedule is None or self.buffer is None:
            return
        state = {
            "step": self.step,
            "schedule": self.schedule.state_dict(),
            "buffer": self.buffer.state_dict(),
            "replay_rng": self.replay_rng.bit_generator.state,
        }
        out = io.BytesIO()
        torch.save(state, out)
        store, run_id = self._run_store()
        store.save_artifact(run_id, ONPOLICY_FILE, out.getvalue(), kind="resume", epoch=self.epoch)

    def _load_resume(self) -> None:
        super()._load_resume()
        store, run_id = self._run_store()
        steps = store.metrics(run_id, "step")
        for col in (c for c in steps.columns if str(c).startswith("source_")):
            self.counts[str(col)[len("source_") :]] = int(steps[col].fillna(0).sum())
        if self.schedule is not None and self.step > 0:
            self._load_distillm_state(store, run_id)

    def _load_distillm_state(self, store: Any, run_id: str) -> None:
        assert self.schedule is not None and self.buffer is not None
        try:
            state = torch.load(io.BytesIO(store.read_artifact(run_id, ONPOLICY_FILE)), weights_only=True)
        except Exception as exc:  # missing, altered or unreadable: the run cannot continue exactly
            raise ValueError(
                f"Run {run_id} cannot resume: its DistiLLM state ({ONPOLICY_FILE}: φ, the replay buffer) is "
                f"unreadable ({exc}). Start the run again."
            ) from None
        if state["step"] != self.step:
            raise ValueError(
                f"Run {run_id} cannot resume: its DistiLLM state is from step {state['step']}, its weights from "
                f"step {self.step} (a checkpoint). Start the run again."
            )
        self.schedule.load_state_dict(state["schedule"])
        self.buffer.load_state_dict(state["buffer"])
        self.replay_rng.bit_generator.state = state["replay_rng"]

    def summary(self) -> dict:
        s = super().summary()
        done = sum(self.counts.values())
        if done:
            s["onpolicy_share"] = sum(self.counts.get(k, 0) for k in STUDENT_SOURCES) / done
            s.update({f"steps_{k}": v for k, v in sorted(self.counts.items())})
        return s


def right_align(ids: Tensor, targets: Tensor, prompt_mask: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Rows of left-padded prompt ⧺ completion (ids, targets [B, W]; prompt_mask [B, P]) moved left by
    their pad count, so each starts at column 0 and padding follows (what an unmasked causal forward
    needs: same tokens at the same positions as at generation). Targets move with their ids."""
    shift = (prompt_mask == 0).sum(1, keepdim=True).to(ids.device)  # [B, 1] pad columns of each prompt
    src = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0) + shift  # [B, W] source column
    inside = src < ids.shape[1]
    src = src.clamp(max=ids.shape[1] - 1)
    moved_ids = torch.where(inside, ids.gather(1, src), torch.full_like(ids, pad))
    moved_targets = torch.where(inside, targets.gather(1, src), torch.full_like(targets, IGNORE_INDEX))
    return moved_ids, moved_targets


def _record_prompt_len(params: dict, extras: dict) -> Tensor | None:
    """[N] prompt lengths when the run takes prompt records (sequence_data), None for windows."""
    if params.get("prompts", "auto") == "window" or "prompt_len" not in extras:
        return None
    return extras["prompt_len"].cpu()


def _record_ids(config: JobConfig, prep: Any, eos: int | None, pad: int) -> tuple[int | None, int]:
    """(stop id, pad id) of the prompt records (their dataset's), else the model's."""
    from kdcore.jobs.sequence_data import sequence_data

    info = sequence_data(config, prep.pair, prep.pair.dataset).load_report or {}
    stop, fill = info.get("eos_id", eos), info.get("pad_id", pad)
    return stop, int(fill) if fill is not None else pad


def _special_ids(adapter: ModelAdapter) -> tuple[int | None, int]:
    """(stop id, pad id) from the model's config (None, 0 for models without one)."""
    cfg = getattr(adapter.model, "config", None)
    eos = getattr(cfg, "eos_token_id", None)
    eos = eos if isinstance(eos, int) else (eos[0] if isinstance(eos, (list, tuple)) and eos else None)
    pad = getattr(cfg, "pad_token_id", None)
    return eos, pad if isinstance(pad, int) else (eos if eos is not None else 0)
