"""Reading a local Hugging Face model directory without loading the model: its config and tokenizer files.

Shared by the student builder (make_student.py) and the tokenizer-true text data (kdcore.data.hf_text),
so both check a directory the same way and name the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdcore.validation import InvalidParameterError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Files that make up a tokenizer, in any of the forms transformers writes (fast, SentencePiece, WordPiece, BPE).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
)
_TOKENIZER_CORE = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json")  # at least one is needed
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")


def local_path(path: Any, *, name: str, where: str, what: str) -> Path:
    """`path` (a str or Path) with ~ expanded; anything else refused, saying it must be `what`."""
    if not isinstance(path, (str, Path)):
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be {what} (str or Path). Got {type(path).__name__} instead."
        )
    return Path(path).expanduser()


def check_new_dir(path: Any, *, name: str, where: str) -> Path:
    """A directory to write a model into: a path that does not exist yet, or an empty directory."""
    p = local_path(path, name=name, where=where, what="a directory path")
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be a new or empty directory, so that no file of another "
            f"model is mixed with this one. Got {str(p)!r}, which {'is not empty' if p.is_dir() else 'is a file'}. "
            f"Choose another path."
        )
    return p


def check_model_dir(path: Any, *, name: str, where: str, weights: bool = True) -> Path:
    """A local Hugging Face model directory: config.json, and a weights file when `weights`."""
    p = local_path(path, name=name, where=where, what="a directory path")
    if not p.is_dir():
        what = "is a file" if p.exists() else "does not exist"
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be a local Hugging Face model "
            f"directory (made by save_pretrained). Got {str(p)!r}, which {what}."
        )
    if not (p / "config.json").is_file():
        raise InvalidParameterError(
            f"The '{name}' directory {str(p)!r} given to {where} has no config.json, so it "
            f"is not a Hugging Face model directory. Save the model there with "
            f"model.save_pretrained(path)."
        )
    if weights and not any((p / f).is_file() for f in WEIGHT_FILES):
        raise InvalidParameterError(
            f"The '{name}' directory {str(p)!r} given to {where} has no weights file "
            f"(expected one of {list(WEIGHT_FILES)})."
        )
    return p


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json as a dict (read as JSON: no code runs, nothing is downloaded)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidParameterError(
            f"Could not read {str(model_dir / 'config.json')!r}: {err}. "
            f"Expected the JSON file that save_pretrained writes."
        ) from None
    if not isinstance(config, dict):
        raise InvalidParameterError(
            f"{str(model_dir / 'config.json')!r} must hold a JSON object. Got {type(config).__name__} instead."
        )
    return config


def max_positions(config: dict[str, Any]) -> int | None:
    """The longest input the model's position embeddings allow, or None when the config does not say."""
    for key in _POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def num_layers(model_dir: str | Path) -> int | None:
    """config.json's num_hidden_layers of a model directory, or None when it does not say (a single-file
    model, an unreadable config, no such field)."""
    path = Path(model_dir).expanduser()
    try:
        n = read_config(path).get("num_hidden_layers") if path.is_dir() else None
    except InvalidParameterError:
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


# config.json's architectures by model kind: a head's class name ends so; a bare encoder (BertModel) in "Model"
_HEADS = {"causal_lm": "ForCausalLM", "classifier": "ForSequenceClassification", "encoder": "Model"}


def check_kind(model_dir: str | Path, kind: str) -> None:
    """Refuse a model kind that contradicts the directory's config.json (a causal LM loaded as a classifier
    would get a new, random classification head without a word); a directory without a readable config.json
    passes (its loader says what is wrong in its own words)."""
    try:
        archs = read_config(Path(model_dir).expanduser()).get("architectures") or []
    except InvalidParameterError:
        return
    for other, suffix in _HEADS.items():
        arch = next((a for a in archs if isinstance(a, str) and a.endswith(suffix)), None)
        if arch is not None and other != kind:
            raise InvalidParameterError(
                f"The teacher directory {str(model_dir)!r} holds a {arch} (config.json's architectures), but Kind "
                f"is {kind!r}. Choose Kind {other!r}."
            )


def tokenizer_files(model_dir: Path) -> list[str]:
    """The tokenizer files present in model_dir (names from TOKENIZER_FILES), in that order."""
    return [f for f in TOKENIZER_FILES if (model_dir / f).is_file()]


def check_has_tokenizer(model_dir: Path, *, name: str, where: str) -> None:
    """Refuses a model directory without the files a tokenizer loads from."""
    if not any((model_dir / f).is_file() for f in _TOKENIZER_CORE):
        raise InvalidParameterError(
            f"The '{name}' directory {str(model_dir)!r} given to {where} has no tokenizer (expected one of "
            f"{list(_TOKENIZER_CORE)}, with tokenizer_config.json). Save the model's tokenizer next to it: "
            f"tokenizer.save_pretrained({str(model_dir)!r})."
        )
