"""Train every sample pair and write its safetensors weights and manifest entry, bit for bit.

    python -m sample_models.train                 # all pairs, into sample_models/weights/
    python -m sample_models.train --only digits   # one pair
    python -m sample_models.train --check         # retrain into a temp dir, compare sha256 with the manifest
    python -m sample_models.train --ladder-only   # only the student ladders (digits, shapes)

A classifier pair with a student ladder (``architectures.LADDERS``: digits, shapes) also gets its
rungs, CNNs sized strictly between student and teacher, each trained on the labels like the
teacher, after the pair's three models so that their bytes do not change (the teacher
assistants of TAKD / DGKD chains, kdcore/jobs/chain.py); the manifest lists them under "ladder".

For each pair: the teacher is trained on the labels; the student is trained with the teacher
(classic KD, Hinton et al. 2015, arXiv 1503.02531; for tinylang the forward KL per token from
kdcore.divergences mixed with cross-entropy); the baseline student has the same architecture,
seed and schedule as the student but learns from the labels alone.

Bit-for-bit reproduction: fixed seeds, deterministic algorithms, one thread, a fixed data order,
and CPU kernels pinned to AVX2 (the script re-executes itself with ATEN_CPU_CAPABILITY,
ONEDNN_MAX_CPU_ISA and MKL_CBWR set, before torch is imported), so any x86-64 machine with AVX2
and the same torch version writes the same bytes.
"""

from __future__ import annotations

import argparse
import os
import sys

_PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # convolutions
    "MKL_CBWR": "AVX2",  # matrix products: MKL's conditional numerical reproducibility
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "KDWB_TRAIN_PINNED": "1",
}


def _reexec_pinned(argv: list[str]) -> None:
    """Restart this script in a fresh interpreter whose CPU kernels are pinned (see module doc)."""
    if os.environ.get("KDWB_TRAIN_PINNED") == "1":
        return
    env = {**os.environ, **_PINNED_ENV}
    os.execve(sys.executable, [sys.executable, "-m", "sample_models.train", *argv], env)


if __name__ == "__main__":
    _reexec_pinned(sys.argv[1:])

import hashlib  # noqa: E402  (after the re-exec: nothing heavy is imported before it)
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from kdcore.data import IGNORE_INDEX, Dataset, get_dataset  # noqa: E402
from kdcore.divergences import divergence_loss  # noqa: E402
from kdcore.losses import binary_kd_loss, kd_loss  # noqa: E402
from sample_models import architectures as arch  # noqa: E402

ROOT = Path(__file__).resolve().parent
WEIGHTS = ROOT / "weights"
MANIFEST = ROOT / "manifest.json"
THREADS = 1  # fixed: the sha256 of every weight file depends on it
SUBSET = 200  # test samples whose metrics the fast test recomputes


@dataclass(frozen=True)
class Recipe:
    """How one pair is trained."""

    dataset: str  # registry name of the data
    teacher: str  # class name in sample_models.architectures
    student: str  # class name in sample_models.architectures (student and baseline)
    seed: int = 0  # seeds model initialisation and data order
    teacher_epochs: int = 20  # passes over the training split
    student_epochs: int = 20  # for the student and the baseline alike
    batch_size: int = 64  # samples per step
    lr: float = 3e-3  # teacher's peak learning rate (Adam), cosine-decayed to 0
    student_lr: float = 1e-2  # the same for the student and the baseline
    warmup: int = 0  # linear warm-up steps
    temperature: float = 4.0  # KD temperature (classification)
    lam: float = 0.9  # weight of the distillation term; 1 - lam on the labels


def _image_recipe(dataset: str, model: str, *, seed: int, epochs: tuple[int, int], lr: float) -> Recipe:
    """An image pair `model`Teacher / `model`Student trained for `epochs` (teacher, student): batches
    of 64, teacher lr `lr`, student lr 1e-2, T = 2 and λ = 0.5 (see below)."""
    teacher_epochs, student_epochs = epochs
    return Recipe(
        dataset,
        f"{model}Teacher",
        f"{model}Student",
        seed=seed,
        teacher_epochs=teacher_epochs,
        student_epochs=student_epochs,
        batch_size=64,
        lr=lr,
        student_lr=1e-2,
        temperature=2.0,
        lam=0.5,
    )


RECIPES = {
    "digits": _image_recipe("digits", "Digits", seed=1, epochs=(20, 60), lr=5e-3),
    "shapes": _image_recipe("shapes", "Shapes", seed=2, epochs=(8, 20), lr=3e-3),
    "shapes_multilabel": _image_recipe("shapes_multilabel", "Shapes", seed=3, epochs=(8, 20), lr=3e-3),
    "tinylang": Recipe(
        "tinylang",
        "TinyLangTeacher",
        "TinyLangStudent",
        seed=4,
        teacher_epochs=8,
        student_epochs=8,
        batch_size=32,
        lr=3e-3,
        student_lr=5e-3,
        warmup=100,
        temperature=1.0,
        lam=0.5,
    ),
}
# T = 2 and λ = 0.5 rather than Hinton's T = 4, λ = 0.9: with the smallest students, T = 4 left the
# distilled student below its baseline at the full training length (measured while choosing the
# recipes). Short jobs from scratch favour T = 4 (tests/test_recipe_lesson_*.py).


# ---- losses ---------------------------------------------------------------------------------


def _task_loss(task: str, logits: Tensor, targets: Tensor) -> Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if task == "causal_lm":
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits, targets)


def _distill_loss(task: str, recipe: Recipe, logits: Tensor, teacher: Tensor, targets: Tensor) -> Tensor:
    if task == "multilabel":
        return binary_kd_loss(logits, teacher, targets, temperature=recipe.temperature, lam=recipe.lam)  # `bkd`
    if task == "causal_lm":
        # (1 − λ)·CE + λ·mean over predicted positions of KL(p_teacher ‖ q_student), METHODS §6
        # (no T² factor on token divergences; the tinylang recipe uses T = 1)
        ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        kl = divergence_loss(logits, teacher, "fkl", labels=targets, temperature=recipe.temperature)
        return (1 - recipe.lam) * ce + recipe.lam * kl
    return kd_loss(logits, teacher, targets, temperature=recipe.temperature, lam=recipe.lam)


# ---- training -------------------------------------------------------------------------------


def _build(name: str, dataset: Dataset, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # the initial weights depend on the seed only
    return getattr(arch, name)(dataset.size)


@torch.no_grad()
def _predict(model: nn.Module, inputs: Tensor, batch_size: int = 256) -> Tensor:
    model.eval()
    return torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])


def _fit(
    model: nn.Module,
    dataset: Dataset,
    recipe: Recipe,
    epochs: int,
    lr: float,
    seed: int,
    teacher_logits: Tensor | None = None,
) -> nn.Module:
    """Adam with a cosine schedule over a seeded data order; distils when teacher_logits are given."""
    train = dataset.split("train")
    n = len(train)
    steps = epochs * ((n + recipe.batch_size - 1) // recipe.batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, recipe.warmup)) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order)
        for i in range(0, n, recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            logits = model(train.inputs[idx])
            if teacher_logits is None:
                loss = _task_loss(dataset.task, logits, train.targets[idx])
            else:
                loss = _distill_loss(dataset.task, recipe, logits, teacher_logits[idx], train.targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


# ---- metrics --------------------------------------------------------------------------------


def evaluate(model: nn.Module, dataset: Dataset, n: int | None = None) -> dict[str, float]:
    """Test metrics of ``model`` on the first n test samples (all when None)."""
    test = dataset.split("test") if n is None else dataset.split("test").subset(n)
    logits = _predict(model, test.inputs)
    y = test.targets
    if dataset.task == "classification":
        return {
            "accuracy": (logits.argmax(-1) == y).double().mean().item(),
            "loss": F.cross_entropy(logits.double(), y).item(),
        }
    if dataset.task == "multilabel":
        pred = logits > 0
        tp = (pred & (y > 0.5)).sum().item()
        f1 = 2 * tp / max(1, pred.sum().item() + (y > 0.5).sum().item())
        return {
            "exact_match": (pred == (y > 0.5)).all(-1).double().mean().item(),
            "label_accuracy": (pred == (y > 0.5)).double().mean().item(),
            "f1_micro": f1,
            "loss": F.binary_cross_entropy_with_logits(logits.double(), y.double()).item(),
        }
    return _lm_metrics(logits, test)


def _lm_metrics(logits: Tensor, test) -> dict[str, float]:
    """Cross-entropy per token (all positions and by position kind), the true entropy and the
    excess of the model over it (the mean KL from the true distribution)."""
    from kdcore.data.tinylang import true_entropy

    log_q = F.log_softmax(logits.double(), dim=-1)  # [N, L, V]
    ce = -log_q.gather(-1, test.targets.unsqueeze(-1)).squeeze(-1)  # [N, L]
    p = test.extras["true_probs"].double()
    known = ~torch.isnan(p).any(-1)  # [N, L]
    h = true_entropy(p)  # [N, L]
    kl = (torch.where(p > 0, p * (p.clamp_min(1e-300).log() - log_q), torch.zeros_like(p))).sum(-1)
    kind = test.extras["position_kind"]
    out = {
        "loss": ce.mean().item(),
        "true_entropy": h[known].mean().item(),
        "excess_over_true": kl[known].mean().item(),
    }
    for k, label in ((0, "local"), (1, "copy"), (-1, "other")):
        sel = kind == k
        out[f"loss_{label}"] = ce[sel].mean().item()
        out[f"true_entropy_{label}"] = h[sel & known].mean().item()
    return out


# ---- files ----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(model: nn.Module, path: Path) -> str:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return _sha256(path)


def _fit_student(recipe: Recipe, dataset: Dataset, teacher_logits: Tensor | None = None) -> nn.Module:
    """The recipe's student from its own seed (the teacher's + 1); distilled when teacher_logits are given."""
    seed = recipe.seed + 1
    model = _build(recipe.student, dataset, seed)
    return _fit(model, dataset, recipe, recipe.student_epochs, recipe.student_lr, seed, teacher_logits=teacher_logits)


def train_pair(name: str, out_dir: Path) -> dict:
    """Train the pair ``name`` and write its three weight files to out_dir; return its manifest entry."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(THREADS)
    recipe = RECIPES[name]
    dataset = get_dataset(recipe.dataset)
    start = time.perf_counter()
    teacher = _fit(
        _build(recipe.teacher, dataset, recipe.seed), dataset, recipe, recipe.teacher_epochs, recipe.lr, recipe.seed
    )
    soft = _predict(teacher, dataset.split("train").inputs)  # the teacher's logits on the training split
    student = _fit_student(recipe, dataset, teacher_logits=soft)
    baseline = _fit_student(recipe, dataset)  # the same student, seed and budget, on labels alone
    seconds = time.perf_counter() - start
    ladder_start = time.perf_counter()
    ladder = _fit_ladder(name, recipe, dataset, out_dir)
    ladder_seconds = time.perf_counter() - ladder_start
    models = {}
    for role, model, cls in (
        ("teacher", teacher, recipe.teacher),
        ("student", student, recipe.student),
        ("student_baseline", baseline, recipe.student),
    ):
        file = f"{name}_{role}.safetensors"
        models[role] = {
            "architecture": f"sample_models.architectures:{cls}",
            "file": f"weights/{file}",
            "parameters": sum(p.numel() for p in model.parameters()),
            "sha256": _save(model, out_dir / file),
            "test": evaluate(model, dataset),
            f"test_first_{SUBSET}": evaluate(model, dataset, SUBSET),
        }
    trained_with = {
        "teacher": "labels",
        "student": (
            "forward KL to the teacher per token mixed with cross-entropy"
            if dataset.task == "causal_lm"
            else "classic KD on the teacher's logits"
            + (" (per-class sigmoids)" if dataset.task == "multilabel" else "")
        ),
        "student_baseline": "labels",
    }
    for role in models:
        models[role]["trained_with"] = trained_with[role]
    entry = {"dataset": recipe.dataset, "task": dataset.task, "recipe": asdict(recipe), "models": models}
    entry["train_seconds"] = round(seconds, 1)
    if ladder:
        entry.update(ladder=ladder, ladder_train_seconds=round(ladder_seconds, 1))
    return entry


def _fit_ladder(name: str, recipe: Recipe, dataset: Dataset, out_dir: Path) -> list[dict]:
    """The pair's student ladder (``architectures.LADDERS``, largest first), each rung trained on the
    labels like the teacher (teacher epochs and lr) from its own seed (teacher's + 2 + rung), its
    weights written to out_dir; returns the manifest rows. Trained after the three pair models, so
    their bytes do not depend on the ladder (and `--ladder-only` retrains the ladder alone)."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(THREADS)
    rows = []
    for i, spec in enumerate(arch.LADDERS.get(name, ())):
        seed = recipe.seed + 2 + i
        torch.manual_seed(seed)
        model = _fit(arch.ladder_model(spec, dataset.size), dataset, recipe, recipe.teacher_epochs, recipe.lr, seed)
        file = f"{name}_ladder{i + 1}.safetensors"
        rows.append(
            {
                "architecture": "sample_models.architectures:LadderCNN",
                "config": {"in_channels": spec.in_channels, "channels": list(spec.channels), "pools": list(spec.pools)},
                "file": f"weights/{file}",
                "parameters": sum(p.numel() for p in model.parameters()),
                "seed": seed,
                "sha256": _save(model, out_dir / file),
                "test": evaluate(model, dataset),
                f"test_first_{SUBSET}": evaluate(model, dataset, SUBSET),
                "trained_with": "labels",
            }
        )
    return rows


def _manifest_header() -> dict:
    return {
        "format": 1,
        "torch": torch.__version__.split("+")[0],
        "threads": THREADS,
        "cpu_kernels": {k: v for k, v in _PINNED_ENV.items() if k not in ("KDWB_TRAIN_PINNED",)},
        "command": "python -m sample_models.train",
    }


def _train_ladders_only(names: list[str]) -> int:
    """Retrain the ladders of `names` into weights/ and replace their manifest rows (the rest kept)."""
    manifest = json.loads(MANIFEST.read_text())
    for name in names:
        if name not in arch.LADDERS:
            continue
        recipe = RECIPES[name]
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rows = _fit_ladder(name, recipe, get_dataset(recipe.dataset), Path(tmp))
            for f in Path(tmp).iterdir():
                shutil.move(str(f), WEIGHTS / f.name)
        manifest["pairs"][name].update(ladder=rows, ladder_train_seconds=round(time.perf_counter() - start, 1))
        tests = ", ".join(f"{r['parameters']} params {json.dumps(r['test'])}" for r in rows)
        print(f"{name} ladder: {time.perf_counter() - start:.0f}s {tests}", flush=True)
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sample_models.train", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(RECIPES), help="train only this pair")
    parser.add_argument(
        "--check",
        action="store_true",
        help="retrain into a temporary folder and compare sha256 with the manifest (exit 1 on a mismatch)",
    )
    parser.add_argument(
        "--ladder-only",
        action="store_true",
        help="retrain only the student ladders (they do not depend on the pair's models); update their manifest rows",
    )
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(RECIPES)
    if args.ladder_only and not args.check:
        return _train_ladders_only(names)
    if args.check:
        manifest = json.loads(MANIFEST.read_text())
        bad = 0
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                entry = train_pair(name, Path(tmp))
                old = manifest["pairs"][name]
                found = {**entry["models"], **{f"ladder{i + 1}": m for i, m in enumerate(entry.get("ladder", []))}}
                wanted = {**old["models"], **{f"ladder{i + 1}": m for i, m in enumerate(old.get("ladder", []))}}
                bad += len(set(found) ^ set(wanted))
                for role, info in found.items():
                    want = wanted.get(role, {}).get("sha256", "(none)")
                    ok = info["sha256"] == want
                    bad += not ok
                    print(
                        f"{name:18s} {role:16s} {'ok' if ok else 'MISMATCH'}  {info['sha256'][:16]}  "
                        f"(manifest {want[:16]})  {entry['train_seconds']:.0f}s",
                        flush=True,
                    )
        return 1 if bad else 0
    WEIGHTS.mkdir(exist_ok=True)
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"pairs": {}}
    manifest = {**manifest, **_manifest_header(), "pairs": manifest.get("pairs", {})}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            entry = train_pair(name, Path(tmp))
            for f in Path(tmp).iterdir():
                shutil.move(str(f), WEIGHTS / f.name)
        manifest["pairs"][name] = entry
        print(
            f"{name}: {entry['train_seconds']:.0f}s "
            + ", ".join(f"{role} {json.dumps(info['test'])}" for role, info in entry["models"].items()),
            flush=True,
        )
        MANIFEST.write_text(
            json.dumps(
                {**manifest, "pairs": {k: manifest["pairs"][k] for k in RECIPES if k in manifest["pairs"]}}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
