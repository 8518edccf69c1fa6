"""Each analysis's time on the sample pairs at the default probe size (issue 5; goal: under 1 s each on CPU).

Times compute + figure for every analysis that applies to a pair, best of a few repeats, and prints
each beside a baseline run in the same process (one teacher forward over the probe batch), since
absolute times on a shared machine mean little on their own.

    python bench/analysis_times.py [--probe 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

import sample_models
from analyses import attention, calibration, cams, cka, components, scorecard, soft_labels

TEMPERATURES = [0.5, 1, 2, 4, 8, 16]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _classifier_cases(pair, x, y, masks):
    multilabel = pair.dataset.task == "multilabel"
    labels = None if multilabel else y
    zt, zs = pair.teacher.logits(x), pair.student.logits(x)
    cases = {
        "soft labels vs T": lambda: soft_labels.figure_sweep(soft_labels.compare_sweeps(zs, zt, TEMPERATURES, labels)),
        "KD gradient scale": lambda: soft_labels.figure_gradient_scale(
            soft_labels.gradient_scale(zs, zt, TEMPERATURES)
        ),
        "CKA heatmap": lambda: cka.figure_heatmap(cka.pair_cka(pair.teacher, pair.student, x)),
        "attention transfer": lambda: attention.attention_transfer_figure(
            attention.attention_transfer_from_adapters(
                pair.student,
                pair.teacher,
                x,
                student_layer=pair.student.cam_layer,
                teacher_layer=pair.teacher.cam_layer,
            )
        ),
        "divergence components": lambda: components.class_figure(
            components.compute(
                zs, zt, labels, rules=("target", "topk", "mass") if labels is not None else ("topk", "mass")
            )
        ),
    }
    if not multilabel:
        cases["Grad-CAM (+ masks)"] = lambda: cams.overlay_figure(
            cams.compute(pair.student, pair.teacher, x, y, masks=masks)
        )
        cases["calibration"] = lambda: calibration.figure_reliability(calibration.compare_calibration(zs, zt, y))
        cases["scorecard + risk"] = lambda: scorecard.figure_risk(
            scorecard.pair_scorecard(pair.teacher, pair.student, x, y, baseline=pair.student_baseline).risk
        )
    return cases


def _lm_cases(pair, x, y):
    zt, zs = pair.teacher.logits(x), pair.student.logits(x)
    return {
        "soft labels vs T": lambda: soft_labels.figure_sweep(
            soft_labels.compare_sweeps(zs.flatten(0, 1), zt.flatten(0, 1), TEMPERATURES, None)
        ),
        "CKA heatmap": lambda: cka.figure_heatmap(cka.pair_cka(pair.teacher, pair.student, x)),
        "attention heads": lambda: attention.matching_figure(
            attention.compute_from_adapters(pair.student, pair.teacher, x)
        ),
        "token divergences": lambda: components.token_figure(components.token_components(zs[:1], zt[:1], labels=y[:1])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", type=int, default=64, help="probe inputs (the app's default is 64)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(
        f"analysis times on CPU · torch {torch.__version__} · {torch.get_num_threads()} threads · "
        f"probe {args.probe} · best of {args.repeats} (compute + figure)"
    )
    print(f"{'pair':18s} {'analysis':24s} {'seconds':>8s} {'x baseline':>11s}  goal < 1 s")
    worst = 0.0
    for name in sample_models.PAIRS:
        pair = sample_models.load_pair(name)
        test = pair.dataset.split("test").subset(args.probe)
        x, y = test.inputs, test.targets
        base = _best(functools.partial(pair.teacher.logits, x), args.repeats)
        cases = _lm_cases(pair, x, y) if pair.kind == "causal_lm" else _classifier_cases(pair, x, y, test.masks)
        for label, fn in cases.items():
            fn()  # warm-up (first-call allocations, lazy imports)
            t = _best(fn, args.repeats)
            worst = max(worst, t)
            print(f"{name:18s} {label:24s} {t:8.3f} {t / base:11.1f}  {'ok' if t < 1 else 'SLOW'}")
    print(f"slowest analysis: {worst:.3f} s (goal < 1 s)")


if __name__ == "__main__":
    main()
