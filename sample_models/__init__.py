"""sample_models: small teacher/student pairs on shipped or generated data, with their training
script (``python -m sample_models.train``) and committed safetensors weights.

    from sample_models import PAIRS, load_pair
    pair = load_pair("digits")          # Pair(teacher, student, student_baseline, dataset, ladder)

Importing the package registers its pairs in kdcore's pair registry (``register_pairs``, also the
``kdworkbench.pairs`` entry point in pyproject.toml), so ``run_job(JobConfig(pair="digits"))`` finds
them while kdcore never imports this package.

``manifest.json`` records, for every weight file, its architecture, data, seed, parameter count,
test metrics and sha256.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from kdcore.data import DATASETS as DATASETS  # re-exported: the datasets the pairs were trained on
from kdcore.data import get_dataset as get_dataset

PAIRS = ("digits", "shapes", "shapes_multilabel", "tinylang")
ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "manifest.json"
ROLES = ("teacher", "student", "student_baseline")
DESCRIPTIONS = {
    "digits": "handwritten 8×8 digits: CNN teacher and a smaller CNN student",
    "shapes": "coloured shapes with masks: CNN teacher and student",
    "shapes_multilabel": "several shapes per image (multi-label): CNN teacher and student",
    "tinylang": "a tiny language: decoder-only transformer teacher and student",
}


def manifest() -> dict:
    """The parsed manifest.json (a fresh copy on each call)."""
    return json.loads(MANIFEST.read_text())


def _check_name(name: str, where: str) -> None:
    if name not in PAIRS:
        raise ValueError(f"The 'name' argument of {where} must be one of {PAIRS}. Got {name!r} instead.")


def load_model(name: str, role: str):
    """The plain ``nn.Module`` of one sample model (eval mode), its weights read with safetensors.

    name: a pair in PAIRS; role: "teacher", "student" or "student_baseline". Returns a new module
    on every call (unlike ``load_pair``, which caches).
    """
    from safetensors.torch import load_file

    from sample_models import architectures

    _check_name(name, "load_model")
    if role not in ROLES:
        raise ValueError(f"The 'role' argument of load_model must be one of {ROLES}. Got {role!r} instead.")
    entry = manifest()["pairs"][name]
    info = entry["models"][role]
    cls = getattr(architectures, info["architecture"].split(":", 1)[1])
    model = cls(get_dataset(entry["dataset"]).size)
    model.load_state_dict(load_file(str(ROOT / info["file"])), strict=True)
    return model.eval()


def ladder_size(name: str) -> int:
    """How many rungs the student ladder of pair ``name`` has (0: none)."""
    _check_name(name, "ladder_size")
    return len(manifest()["pairs"][name].get("ladder", []))


def load_ladder_model(name: str, rung: int):
    """Rung ``rung`` (0 = largest) of pair ``name``'s student ladder as a plain ``nn.Module`` (eval
    mode), its weights read with safetensors: a CNN sized strictly between student and teacher,
    trained on the labels (``manifest()["pairs"][name]["ladder"]``). A new module on every call."""
    from safetensors.torch import load_file

    from sample_models import architectures

    _check_name(name, "load_ladder_model")
    rows = manifest()["pairs"][name].get("ladder", [])
    if isinstance(rung, bool) or not isinstance(rung, int) or not 0 <= rung < len(rows):
        have = f"an integer in [0, {len(rows) - 1}]" if rows else "nothing: this pair has no ladder"
        raise ValueError(f"The 'rung' argument of load_ladder_model for {name!r} must be {have}. Got {rung!r} instead.")
    info = rows[rung]
    cfg = info["config"]
    spec = architectures.CNNSpec(cfg["in_channels"], tuple(cfg["channels"]), tuple(cfg["pools"]))
    model = architectures.ladder_model(spec, get_dataset(manifest()["pairs"][name]["dataset"]).size)
    model.load_state_dict(load_file(str(ROOT / info["file"])), strict=True)
    return model.eval()


@functools.cache
def load_pair(name: str):
    """The sample pair ``name`` as a ``kdcore.pairs.Pair``, cached: callers share it and must never
    mutate it (clone an adapter before training it).

    teacher: trained on labels; student: trained with the teacher (classic KD, or forward KL per
    token for tinylang); student_baseline: the student's architecture trained on labels alone.
    """
    from kdcore.adapters import wrap
    from kdcore.pairs import Pair

    _check_name(name, "load_pair")
    dataset = get_dataset(manifest()["pairs"][name]["dataset"])
    kind = "causal_lm" if dataset.task == "causal_lm" else "classifier"
    adapters = {
        role: wrap(load_model(name, role), name=f"{name} {role.replace('_', ' ')}", kind=kind, output_size=dataset.size)
        for role in ROLES
    }
    ladder = tuple(
        wrap(load_ladder_model(name, i), name=f"{name} ladder {i + 1}", kind=kind, output_size=dataset.size)
        for i in range(ladder_size(name))
    )
    return Pair(name=name, dataset=dataset, ladder=ladder, **adapters)


def register_pairs() -> None:
    """Register every sample pair in kdcore's pair registry (the ``kdworkbench.pairs`` entry point;
    also run on import), each with its recommended job recipe (``sample_models.recipes.RECIPES``:
    what the CLI and the Distill form use for the fields the user does not set). How the shipped
    weights were trained stays in ``manifest()["pairs"][name]["recipe"]``. Safe to call again."""
    from kdcore.pair_registry import register_pair
    from sample_models.recipes import RECIPES

    for name in PAIRS:
        register_pair(name, functools.partial(load_pair, name), recipe=RECIPES[name], description=DESCRIPTIONS[name])


register_pairs()
