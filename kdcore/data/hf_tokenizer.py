"""A pair's own Hugging Face tokenizer: loading it offline, checking teacher and student agree, and the
small encode/decode/tokens surface the workbench's Dataset.tokenizer offers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdcore.adapters.gguf_files import is_gguf_path, load_gguf_tokenizer
from kdcore.adapters.hf_files import check_has_tokenizer, check_model_dir
from kdcore.validation import InvalidParameterError

_VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"})
_ROLES = ("bos_token", "eos_token", "pad_token", "unk_token", "cls_token", "sep_token", "mask_token")


def load_hf_tokenizer(model_dir: str | Path, *, name: str = "model_dir", where: str = "load_hf_tokenizer") -> Any:
    """The tokenizer saved in a local model directory (a transformers PreTrainedTokenizerBase).

    Loaded with local_files_only=True and trust_remote_code=False: nothing downloads, no code runs.
    A directory without tokenizer files is refused, naming how to save one. A .gguf file's tokenizer
    is built from its metadata (kdcore.adapters.gguf_files.load_gguf_tokenizer).
    """
    if is_gguf_path(model_dir):
        return load_gguf_tokenizer(model_dir, name=name, where=where)
    path = check_model_dir(model_dir, name=name, where=where, weights=False)
    check_has_tokenizer(path, name=name, where=where)
    from transformers import AutoTokenizer  # imported here: importing kdcore must stay fast

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # corrupt files, a tokenizer class that needs missing packages
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidParameterError(f"Could not load the tokenizer in {str(path)!r} for {where}: {first}") from e


def special_tokens(tok: Any) -> dict[str, tuple[str | None, int | None]]:
    """Each special-token role -> (token, id), None where the tokenizer has none."""
    return {role: (getattr(tok, role, None), getattr(tok, f"{role}_id", None)) for role in _ROLES}


def check_same_tokenizer(teacher_dir: str | Path, student_dir: str | Path) -> None:
    """Refuses a pair whose tokenizers differ (vocabulary or special tokens), naming the `uld` route.

    Token-level divergences compare the two models' distributions token id by token id, which only
    means something when both tokenizers map text to the same ids.
    """
    where = "check_same_tokenizer"
    teacher = load_hf_tokenizer(teacher_dir, name="teacher_dir", where=where)
    student = load_hf_tokenizer(student_dir, name="student_dir", where=where)
    problems = _differences(teacher, student)
    if problems:
        raise InvalidParameterError(
            f"The teacher's tokenizer ({str(teacher_dir)!r}) and the student's ({str(student_dir)!r}) differ: "
            f"{'; '.join(problems)}. Token-level distillation needs one tokenizer for both. Save the teacher's "
            f"tokenizer with the student, or use the cross-tokenizer divergence kind 'uld' (Universal Logit "
            f"Distillation, kdcore.divergences), which compares sorted distributions and needs no shared vocabulary."
        )


def _differences(teacher: Any, student: Any) -> list[str]:
    t_vocab, s_vocab = teacher.get_vocab(), student.get_vocab()
    problems = []
    if t_vocab != s_vocab:
        only_t = sorted(set(t_vocab) - set(s_vocab))[:3]
        moved = sorted(t for t in set(t_vocab) & set(s_vocab) if t_vocab[t] != s_vocab[t])[:3]
        problems.append(
            f"vocabularies of {len(t_vocab)} and {len(s_vocab)} tokens"
            + (f", teacher-only tokens such as {only_t}" if only_t else "")
            + (f", tokens with other ids such as {moved}" if moved else "")
        )
    t_special, s_special = special_tokens(teacher), special_tokens(student)
    for role in _ROLES:
        if t_special[role] != s_special[role]:
            problems.append(
                f"{role} {t_special[role][0]!r} (id {t_special[role][1]}) vs "
                f"{s_special[role][0]!r} (id {s_special[role][1]})"
            )
    return problems


class HFTextTokenizer:
    """Dataset.tokenizer for a Hugging Face tokenizer: encode(str) -> ids (no special tokens added),
    decode(ids) -> str, tokens(ids) -> display strings (whitespace made visible), special_ids (BOS, EOS,
    padding, ...: the ids CKA can leave out). `.hf` is the tokenizer."""

    kind = "hf"

    def __init__(self, hf_tokenizer: Any):
        self.hf = hf_tokenizer
        pad = hf_tokenizer.pad_token_id
        eos = hf_tokenizer.eos_token_id
        self.pad_id: int = pad if pad is not None else (eos if eos is not None else 0)
        self.vocab_size: int = len(hf_tokenizer)
        self.special_ids: tuple[int, ...] = tuple(sorted({int(i) for i in hf_tokenizer.all_special_ids}))

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Any) -> str:
        return str(self.hf.decode([int(i) for i in ids]))

    def tokens(self, ids: Any) -> list[str]:
        return [str(self.hf.decode([int(i)])).translate(_VISIBLE) for i in ids]
