"""Private helpers shared by the loaders of text for a Hugging Face pair (hf_text, hf_sentences).

model_path, config = check_model(model_dir, student_dir, where=..., gguf=...)   # tokenizer checked
L = check_length("max_length", value, config, model_path, where=...)           # ≤ max_position_embeddings
model_path, config, L, hf_tok = open_model(model_dir, student_dir, ...)      # the three above + the tokenizer
owner = assign_rows(n_rows, vf, tf, seed, where=...)                             # [N] "train"/"val"/"test"
splits = masked_splits(inputs, targets, mask, owner)                             # {split: SplitData}
ds = masked_dataset(name, about, (inputs, targets, mask), owner, task=..., tok=...)  # a Dataset over those splits
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdcore.adapters.gguf_files import gguf_config_dict, is_gguf_path
from kdcore.adapters.hf_files import check_has_tokenizer, check_model_dir, max_positions, read_config
from kdcore.data.base import SPLITS, Dataset, SplitData, Task
from kdcore.data.hf_tokenizer import check_same_tokenizer, load_hf_tokenizer
from kdcore.validation import InvalidParameterError, check_int_range


def check_model(model_dir: Any, student_dir: Any, *, where: str, gguf: bool) -> tuple[Path, dict[str, Any]]:
    """The teacher's directory (or, with `gguf`, its .gguf file) and config; the student's tokenizer
    checked against the teacher's. A directory must hold config.json and tokenizer files."""
    if gguf and is_gguf_path(model_dir):  # config and tokenizer from the file's metadata
        config = gguf_config_dict(model_dir, where=where, name="model_dir")
        if student_dir is not None:
            check_same_tokenizer(model_dir, student_dir)
        return Path(model_dir).expanduser(), config
    model_path = check_model_dir(model_dir, name="model_dir", where=where, weights=False)
    check_has_tokenizer(model_path, name="model_dir", where=where)
    if student_dir is not None:
        check_same_tokenizer(model_path, student_dir)
    return model_path, read_config(model_path)


def check_length(name: str, value: Any, config: dict[str, Any], model_path: Path, *, where: str) -> int:
    """Tokens per row: an integer ≥ 1, at most the model's max_position_embeddings when config gives it."""
    L = check_int_range(name, value, 1, 1 << 20, where=where)
    limit = max_positions(config)
    if limit is not None and L > limit:
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be at most the model's "
            f"max_position_embeddings, {limit} (config.json of {str(model_path)!r}). "
            f"Got {L} instead. Use a {name} of at most {limit}."
        )
    return L


def open_model(
    model_dir: Any, student_dir: Any, *, length_name: str, length: Any, where: str, gguf: bool
) -> tuple[Path, dict[str, Any], int, Any]:
    """What both loaders open with: check_model, check_length (the parameter `length_name`) and the
    teacher's Hugging Face tokenizer. Returns (model_path, config, L, tokenizer)."""
    model_path, config = check_model(model_dir, student_dir, where=where, gguf=gguf)
    L = check_length(length_name, length, config, model_path, where=where)
    return model_path, config, L, load_hf_tokenizer(model_path, name="model_dir", where=where)


def assign_rows(n_rows: int, vf: float, tf: float, seed: int, *, where: str) -> np.ndarray:
    """The split of each row [n_rows]: a seeded permutation, val and test at least one row each."""
    n_val, n_test = max(1, round(vf * n_rows)), max(1, round(tf * n_rows))
    if n_rows - n_val - n_test < 1:
        raise InvalidParameterError(
            f"The text given to {where} makes {n_rows} row(s), and train, val and test need "
            f"at least one each (val takes {n_val}, test {n_test}). Give more text or a "
            f"smaller context_length."
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    owner = np.array(["train"] * n_rows, dtype=object)
    owner[order[:n_val]], owner[order[n_val : n_val + n_test]] = "val", "test"
    return owner.astype(str)


def masked_splits(
    inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, owner: np.ndarray
) -> dict[str, SplitData]:
    """Each split's rows of inputs [N, L], targets [N, ...] and extras["attention_mask"] [N, L], as owner [N] names."""
    return {
        s: SplitData(inputs[owner == s], targets[owner == s], extras={"attention_mask": mask[owner == s]})
        for s in SPLITS
    }


def masked_dataset(
    name: str,
    description: str,
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    owner: np.ndarray,
    *,
    task: Task,
    tok: object,
    vocab_size: int | None = None,
    class_names: list[str] | None = None,
) -> Dataset:
    """The Dataset whose splits take the rows of (inputs, targets, attention mask) [N, ...] that owner [N]
    names; num_classes is the number of class_names (None without them)."""
    splits = masked_splits(*rows, owner)
    return Dataset(
        name=name,
        task=task,
        build=lambda: splits,
        num_classes=None if class_names is None else len(class_names),
        vocab_size=vocab_size,
        class_names=class_names,
        tokenizer=tok,
        description=description,
    )
