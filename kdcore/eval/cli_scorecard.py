"""`python -m kdcore scorecard RUN_ID`: the LM scorecard of a run's student against its teacher (spec §15.6)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _cmd_scorecard(args: argparse.Namespace) -> int:
    from kdcore.eval.lm_scorecard import run_scorecard
    from kdcore.eval.speed import SpeedConfig
    from kdcore.jobs.store import RunStore

    sizes = tuple(int(x) for x in str(args.batch_sizes).split(",") if x.strip())
    speed = SpeedConfig(sizes, args.prompt_tokens, args.new_tokens, args.warmup, args.repeats, 0)
    card = run_scorecard(
        RunStore(), args.run_id, n_prompts=args.prompts, max_new_tokens=args.max_new_tokens, speed=speed
    )
    if args.json:
        out = {
            "run_id": args.run_id,
            "pct_of_teacher": card.pct_of_teacher,
            "pct_ci": list(card.pct_ci),
            "em": card.em,
            "ppl": card.ppl,
            "ppl_ratio_ci": list(card.ppl_ratio_ci),
            "param_reduction": card.param_reduction,
            "params": card.params,
            "speedups": card.speedups,
            "speed": {k: v.to_dict(orient="records") for k, v in card.speed.items()},
            "setup": card.setup,
        }
        print(json.dumps(out, indent=2, default=str))
    else:
        print(card.text())
    return 0


def add_scorecard_parser(sub: Any) -> None:
    s = sub.add_parser(
        "scorecard",
        help="LM scorecard of a run: %% of the teacher's exact match, %% fewer parameters, × faster generation",
        description="Greedy exact match on held-out prompts (paired bootstrap interval), token-weighted perplexity, "
        "unique parameters (tied embeddings once) and generation speed-ups (end-to-end medians at batch 1 and the "
        "last batch size; prefill and per-token decode apart), all measured in this process on one device.",
    )
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument("--prompts", type=int, default=200, help="held-out prompts used (default 200)")
    s.add_argument("--max-new-tokens", type=int, default=128, help="greedy completion length cap (default 128)")
    s.add_argument("--prompt-tokens", type=int, default=128, help="speed: prompt length P (scaled to the context)")
    s.add_argument("--new-tokens", type=int, default=128, help="speed: new tokens n (scaled to the context)")
    s.add_argument("--batch-sizes", default="1,16", help="speed: batch sizes (default 1,16)")
    s.add_argument("--warmup", type=int, default=3, help="speed: warm-up runs (default 3)")
    s.add_argument("--repeats", type=int, default=10, help="speed: timed runs (default 10)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_scorecard)
