"""A shallower student made from a Hugging Face teacher directory (METHODS §14.2, layer-subset initialisation).

The student keeps the teacher's config (width, vocabulary, heads, tying) with fewer layers; it copies
the embeddings, norms and head, and the teacher blocks j_0..j_{L_s−1} chosen by `layer_subset_indices`
in order. Every tensor is copied (never a view) and must have the teacher's shape. The student is
written with the model's own ``save_pretrained`` (safetensors; tied input/output embeddings are
saved once and tied again on load), with the teacher's tokenizer files copied next to it.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdcore.adapters.base import _is_block_stack
from kdcore.adapters.hf_files import check_model_dir, check_new_dir, read_config, tokenizer_files
from kdcore.adapters.layer_subset import layer_subset_indices
from kdcore.validation import InvalidParameterError, check_int_range

_WHERE = "make_student_from_teacher"


@dataclass(frozen=True)
class MadeStudent:
    """What make_student_from_teacher wrote.

    path:            the student's directory (config.json, model.safetensors, tokenizer files)
    layers:          teacher layer copied into student layer i, for each i
    teacher_layers:  the teacher's number of layers
    architecture:    the transformers class of both models (e.g. "LlamaForCausalLM")
    tokenizer_files: the tokenizer files copied from the teacher's directory
    """

    path: Path
    layers: list[int]
    teacher_layers: int
    architecture: str
    tokenizer_files: list[str]


def make_student_from_teacher(
    teacher_dir: str | Path,
    n_layers: int,
    out_dir: str | Path,
    *,
    rule: str | Sequence[int] = "spread",
    offset: int = 0,
) -> MadeStudent:
    """Write a `from_teacher` student of `n_layers` layers for the teacher saved in `teacher_dir`.

    teacher_dir: a local Hugging Face directory (causal LM, BERT-style encoder, sequence classifier...)
    n_layers:    the student's depth, 1 <= n_layers <= the teacher's
    out_dir:     a new or empty directory
    rule, offset: which teacher layers, see `layer_subset_indices` ("spread" keeps the first and last)

    Nothing is downloaded and no code from the directory runs.
    """
    src = check_model_dir(teacher_dir, name="teacher_dir", where=_WHERE)
    n_s = check_int_range("n_layers", n_layers, 1, 100_000, where=_WHERE)
    planned = read_config(src).get("num_hidden_layers")  # the layer plan is checked before any weights load
    if isinstance(planned, int) and not isinstance(planned, bool) and planned >= 1:
        layer_subset_indices(planned, n_s, rule, offset)
    out = _check_out_dir(out_dir, src)
    teacher: Any = _load_teacher(src)  # a transformers PreTrainedModel
    n_t = _num_layers(teacher.config)
    indices = layer_subset_indices(n_t, n_s, rule, offset)
    student: Any = _shallow_copy_architecture(teacher, indices)
    lists = _layer_lists(teacher, student, n_t, n_s)
    _copy_weights(teacher, student, {name: indices for name in lists})
    student.save_pretrained(str(out))
    copied = tokenizer_files(src)
    for file_name in copied:
        shutil.copyfile(src / file_name, out / file_name)
    return MadeStudent(
        path=out, layers=indices, teacher_layers=n_t, architecture=type(teacher).__name__, tokenizer_files=copied
    )


def _check_out_dir(out_dir: Any, src: Path) -> Path:
    out = check_new_dir(out_dir, name="out_dir", where=_WHERE)
    if out.resolve() == src.resolve():
        raise InvalidParameterError(f"The 'out_dir' of {_WHERE} must differ from the teacher's directory.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _load_teacher(src: Path) -> nn.Module:
    """The teacher as the transformers class its config names (config.architectures[0])."""
    import transformers  # imported here: importing kdcore must stay fast

    config = transformers.AutoConfig.from_pretrained(str(src), local_files_only=True, trust_remote_code=False)
    names = getattr(config, "architectures", None) or []
    model_cls = getattr(transformers, names[0], None) if names else None
    if model_cls is None:
        raise InvalidParameterError(
            f"The teacher's config.json in {str(src)!r} must name a transformers model "
            f"class in 'architectures' (as save_pretrained writes). Got {names!r} instead."
        )
    try:
        model: nn.Module = model_cls.from_pretrained(
            str(src), local_files_only=True, trust_remote_code=False, weights_only=True, dtype="auto"
        )
    except Exception as e:  # corrupt or mismatched weights
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidParameterError(f"Could not load the teacher {names[0]} from {str(src)!r}: {first}") from e
    return model.eval()


def _num_layers(config: Any) -> int:
    n = getattr(config, "num_hidden_layers", None)
    if not isinstance(n, int) or n < 1:
        raise InvalidParameterError(
            f"{_WHERE} needs a teacher whose config has num_hidden_layers (a positive "
            f"integer). Got {n!r} for {type(config).__name__}."
        )
    return n


def _shallow_copy_architecture(teacher: Any, indices: list[int]) -> nn.Module:
    """A freshly built model of the teacher's class and config, with len(indices) layers, in its dtype."""
    config: Any = copy.deepcopy(teacher.config)
    n_t = config.num_hidden_layers
    config.num_hidden_layers = len(indices)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == n_t:  # per-layer kinds (sliding/full attention)
        config.layer_types = [layer_types[j] for j in indices]
    dtype = next(teacher.parameters()).dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # every weight is overwritten; the seed only keeps the build deterministic
        student: nn.Module = type(teacher)(config)
    return student.to(dtype).eval()


def _block_stacks(teacher: nn.Module, student: nn.Module) -> dict[str, tuple[int, int]]:
    """{name: (teacher length, student length)} of every block container (a ModuleList, or a Sequential
    of children of one class) found under the same name in both models, outermost first."""
    s_modules = dict(student.named_modules())
    return {
        name: (len(m), len(s_modules[name]))
        for name, m in teacher.named_modules()
        if isinstance(m, (nn.ModuleList, nn.Sequential))
        and _is_block_stack(m)
        and name in s_modules
        and _is_block_stack(s_modules[name])
    }


def _layer_lists(teacher: nn.Module, student: nn.Module, n_t: int, n_s: int) -> list[str]:
    """Names of the layer lists: a block container of n_t entries in the teacher and n_s in the student."""
    names = [name for name, lengths in _block_stacks(teacher, student).items() if lengths == (n_t, n_s)]
    if not names:
        raise InvalidParameterError(
            f"{_WHERE} could not find the layer list of {type(teacher).__name__}: no "
            f"ModuleList has {n_t} entries in the teacher and {n_s} in the student."
        )
    return names


def _teacher_key(key: str, mapping: dict[str, list[int]]) -> str:
    """The teacher's name of the student tensor `key`: block i of container `name` becomes block mapping[name][i]."""
    for name, indices in mapping.items():
        prefix = f"{name}." if name else ""
        if key.startswith(prefix):
            i, dot, rest = key[len(prefix) :].partition(".")
            if dot and i.isdigit():
                return f"{prefix}{indices[int(i)]}.{rest}"
    return key


def _copy_weights(teacher: nn.Module, student: nn.Module, mapping: dict[str, list[int]], where: str = _WHERE) -> None:
    """Copies every student tensor (parameters and buffers) from the teacher's mapped tensor, in place;
    a missing counterpart or any shape difference is an error."""
    t_state = teacher.state_dict()
    new_state = {}
    for key, s_tensor in student.state_dict().items():
        t_key = _teacher_key(key, mapping)
        if t_key not in t_state:
            raise InvalidParameterError(
                f"{where}: the student's tensor {key!r} has no counterpart {t_key!r} in the teacher."
            )
        t_tensor = t_state[t_key]
        if t_tensor.shape != s_tensor.shape:
            raise InvalidParameterError(
                f"{where}: the student's tensor {key!r} has shape {tuple(s_tensor.shape)} "
                f"but the teacher's {t_key!r} has {tuple(t_tensor.shape)}: the student is not a shallower "
                f"copy of the teacher. Give the student the teacher's widths and kernel sizes."
            )
        new_state[key] = t_tensor.detach().clone()
    student.load_state_dict(new_state, strict=True)
