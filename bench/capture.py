"""Forward time with feature capture at every default layer, against a plain forward.

For each sample pair (teacher and student; when ``sample_models`` imports) and a tiny randomly
initialised Hugging Face Llama-style model, times ``adapter.logits(x)`` (plain) and
``adapter.capture(x, adapter.default_layers())`` (hooks on every block, detached CPU copies), run
alternately in one process, and prints the fastest time of each and their ratio. Goal: ratio <= 1.15.
A second ratio hooks every module the forward runs (all leaves included), for information.

    python bench/capture.py [--device cuda] [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from kdcore.adapters import load_hf, wrap
from kdcore.hooks import capture_features

GOAL = 1.15


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_alternating(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Seconds per call of each function: the fastest of ``repeats`` calls, the least disturbed on a
    shared CPU (as timeit advises), with calls interleaved so drift hits every side alike."""
    for fn in fns.values():  # warm-up
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def _row(label: str, adapter, x, repeats: int) -> tuple[str, float]:
    layers = adapter.default_layers()
    with capture_features(adapter.model, adapter.layer_names()) as called:  # the modules a forward runs
        adapter.logits(x)
    every = list(called)
    t = _time_alternating(
        {
            "plain": lambda: adapter.logits(x),
            "blocks": lambda: adapter.capture(x, layers),
            "every": lambda: adapter.capture(x, every),
        },
        repeats,
        adapter.device,
    )
    ratio = t["blocks"] / t["plain"]
    print(
        f"{label:<28} {tuple(x.shape)!s:<18} {len(layers):>6} {t['plain'] * 1e3:>9.3f} {t['blocks'] * 1e3:>10.3f} "
        f"{ratio:>7.3f} {'ok' if ratio <= GOAL else 'SLOW':>5} | {len(every):>4} {t['every'] / t['plain']:>7.3f}"
    )
    return label, ratio


def _sample_cases(device: torch.device, batch: int):
    try:
        from sample_models import PAIRS, load_pair
    except Exception as e:  # not merged yet in this checkout
        print(f"(sample_models not importable: {type(e).__name__}: {e}; using a stand-in CNN)")
        from torch import nn

        cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        ).eval()
        yield "stand-in cnn", wrap(cnn, name="cnn").to(device), torch.randn(batch, 3, 32, 32)
        return
    for name in PAIRS:
        pair = load_pair(name)
        x = pair.dataset.split("val").inputs[:batch]
        for role in ("teacher", "student"):
            yield f"{name}/{role}", getattr(pair, role).to(device), x


def _tiny_hf(device: torch.device, batch: int, length: int, tmp: Path):
    """A seeded 4-layer Llama-style model of hidden 128 with untied embeddings (otherwise the sizes of
    tests/helpers/hf_pairs.py's models) loaded from its directory, and a batch of random token ids."""
    from _test_helpers import hf_pairs

    helpers = hf_pairs()
    config = helpers.llama_config(
        4, hidden_size=128, intermediate_size=256, max_position_embeddings=256, tie_word_embeddings=False
    )
    helpers.save_model(config, tmp / "tiny-llama", seed=0, tokenizer=False)
    adapter = load_hf(tmp / "tiny-llama", device=device)
    return adapter, torch.randint(0, helpers.VOCAB, (batch, length))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both sides (fair: same for both)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"capture overhead on {device} (torch {torch.__version__}, {torch.get_num_threads()} thread(s)), "
        f"fastest of {args.repeats}; ratio = capture at default layers / plain forward, goal <= {GOAL}"
    )
    print(
        f"{'model':<28} {'input':<18} {'layers':>6} {'plain ms':>9} {'capture ms':>10} {'ratio':>7} {'':>5} | "
        f"{'all':>4} {'ratio':>7}"
    )
    rows = []
    with torch.inference_mode(False):
        for label, adapter, x in _sample_cases(device, args.batch):
            rows.append(_row(label, adapter, x, args.repeats))
        with tempfile.TemporaryDirectory() as tmp:
            adapter, ids = _tiny_hf(device, min(args.batch, 8), 128, Path(tmp))
            rows.append(_row("tiny hf llama (random)", adapter, ids, args.repeats))
    worst = max(rows, key=lambda r: r[1])
    print(f"worst ratio {worst[1]:.3f} ({worst[0]}); {'all within' if worst[1] <= GOAL else 'ABOVE'} the goal {GOAL}")


if __name__ == "__main__":
    main()
