"""The doctor on a ~135M-parameter Llama-style pair on CPU: seconds and peak memory (goal <= 60 s, <= 4 GB).

The pair is built from configs with seeded random weights, shaped like SmolLM-135M (vocabulary 49152,
hidden 576, intermediate 1536, 30 layers, 9 heads, 3 key/value heads, tied embeddings); the student
is a truncated copy (`make_student_from_teacher`, 15 of the 30 layers). Both are saved with
save_pretrained and the shipped tokenizer into a cache folder (built once, reused), and the data is
~1 MB of seeded text tokenised by that tokenizer (context 256, `load_hf_text`). The run record is a
finished `token` (fkl, T = 2) run with CE, with synthetic per-step and per-epoch metrics, so every check
that can run on an LM pair runs (the gradient-balance replay included).

Each measurement runs `kdcore.doctor.diagnose_run` in a fresh child process (models loaded from disk
inside it, as `python -m kdcore doctor` does) and reports the doctor's wall time and the child's peak
RSS (ru_maxrss, loading included).

    python bench/doctor_llm.py                    # the current code
    python bench/doctor_llm.py --old /tmp/old     # also the code in a checkout of an older commit, and the ratio
    python bench/doctor_llm.py --quick            # a 4-layer teacher (checks the script)
    python bench/doctor_llm.py --threads 1        # one torch thread: CPU time ~ the wall time of an idle core

An older checkout for --old: `mkdir /tmp/old && git archive COMMIT | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = 256
SMOL = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    rope_theta=10000.0,
)


def build_pair(root: Path, layers: int, student_layers: int) -> tuple[Path, Path, Path]:
    """(teacher_dir, student_dir, text file) under root, built once (seeded) and reused."""
    from _test_helpers import hf_pairs

    from kdcore.adapters.make_student import make_student_from_teacher

    llama_config, save_model = hf_pairs().llama_config, hf_pairs().save_model

    teacher, student, text = root / "teacher", root / "student", root / "text.txt"
    if not (teacher / "config.json").exists():
        save_model(llama_config(layers, **SMOL), teacher, seed=0)
    if not (student / "config.json").exists():
        make_student_from_teacher(teacher, student_layers, student)
    if not text.exists():
        import random

        words = (ROOT / "sample_models" / "tokenizer" / "corpus.txt").read_text().split()
        rng = random.Random(0)
        lines = [" ".join(rng.choices(words, k=rng.randint(8, 30))) + "." for _ in range(8000)]
        text.write_text("\n".join(lines))
    return teacher, student, text


CHILD = r"""
import json, resource, sys, time
import numpy as np, pandas as pd, torch
from kdcore.adapters.hf_load import load_hf
from kdcore.data.hf_text import load_hf_text
from kdcore.doctor import RunRecord, diagnose_run
from kdcore.jobs.config import JobConfig

teacher_dir, student_dir, text, context, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)
t0 = time.perf_counter()
teacher = load_hf(teacher_dir, name="teacher")
student = load_hf(student_dir, name="student")
data = load_hf_text(text, teacher_dir, student_dir=student_dir, context_length=context)
load_s = time.perf_counter() - t0
cfg = JobConfig(pair="hf", objective="token", params={"kind": "fkl", "temperature": 2.0}, ce_weight=0.5,
                epochs=3, batch_size=8, lr=3e-4, optimizer="adamw")
steps = pd.DataFrame({"step": np.arange(1, 31), "epoch": np.repeat([1, 2, 3], 10),
                      "loss": np.linspace(9.0, 6.0, 30), "fkl": np.linspace(5.0, 3.0, 30)})
epochs = pd.DataFrame({"epoch": [1, 2, 3], "train_fkl": [4.5, 3.6, 3.1], "val_loss": [7.0, 6.5, 6.2]})
record = RunRecord(cfg.to_dict(), steps=steps, epochs=epochs, summary={"final_val_loss": 6.2})
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

t0, c0 = time.perf_counter(), cpu()
report = diagnose_run(record, teacher=teacher, student=student, dataset=data)
doctor_s, cpu_s = time.perf_counter() - t0, cpu() - c0
rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
print(json.dumps({"load_s": load_s, "doctor_s": doctor_s, "cpu_s": cpu_s, "rss_gb": rss_gb,
                  "threads": torch.get_num_threads(),
                  "findings": sorted(f.id for f in report.findings), "checks": report.checks}))
"""


def measure(code_root: Path, teacher: Path, student: Path, text: Path, threads: int = 0) -> dict:
    """One doctor run in a fresh process whose kdcore is the one in code_root."""
    env = dict(os.environ, PYTHONPATH=str(code_root))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(teacher), str(student), str(text), str(CONTEXT), str(threads)],
        cwd=code_root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"the doctor's child process failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def line(what: str, r: dict) -> str:
    return (
        f"{what}: {r['doctor_s']:.1f} s, peak RSS {r['rss_gb']:.2f} GB (goal <= 60 s, <= 4 GB)"
        f"  [CPU time {r['cpu_s']:.1f} s, {r.get('threads', '?')} torch threads, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, help="a checkout of older code to measure too (the ratio is printed)")
    ap.add_argument("--quick", action="store_true", help="a 4-layer teacher, 2-layer student")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kdwb_bench_doctor_llm")
    ap.add_argument("--verbose", action="store_true", help="print every check's status")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads in the child (0: torch's default); "
        "1 gives a CPU time that contention on a shared machine does not inflate",
    )
    args = ap.parse_args()
    layers, s_layers = (4, 2) if args.quick else (30, 15)
    teacher, student, text = build_pair(args.cache / f"L{layers}", layers, s_layers)
    new = measure(ROOT, teacher, student, text, args.threads)
    size = "a 4-layer test pair" if args.quick else "a ~135M pair"
    print(line(f"doctor on {size}", new) + f"  [loading {new['load_s']:.1f} s; findings {new['findings']}]")
    if args.verbose:
        print(json.dumps(new["checks"], indent=1))
    if args.old is not None:
        old = measure(args.old.resolve(), teacher, student, text, args.threads)
        print(line(f"doctor on {size}, old code ({args.old})", old) + f"  [findings {old['findings']}]")
        print(
            f"ratio new/old: time {new['doctor_s'] / old['doctor_s']:.2f}, peak RSS {new['rss_gb'] / old['rss_gb']:.2f}"
        )


if __name__ == "__main__":
    main()
