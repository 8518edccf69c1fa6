"""Reading a local GGUF file without loading its weights: the checks, its architecture, config and tokenizer.

A GGUF file (llama.cpp's format) holds a model's config as metadata, its tokenizer (vocabulary, merges,
special token ids) and its tensors. transformers rebuilds all three from the file; reading it needs the
optional `gguf` package (`pip install -e '.[gguf]'`), and never `accelerate` here.

Checks run in this order, each with its own error: the path is a file, it starts with the GGUF magic
bytes, the `gguf` package is installed, transformers can read the file's architecture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdcore.adapters.hf_files import local_path
from kdcore.validation import InvalidParameterError

GGUF_MAGIC = b"GGUF"
GGUF_SUFFIX = ".gguf"
INSTALL_HINT = "pip install -e '.[gguf]'"  # or: pip install 'gguf>=0.10'
_NOT_ARCHITECTURES = ("general", "tokenizer")  # keys of transformers' GGUF mapping that name no architecture


def is_gguf_path(path: Any) -> bool:
    """Whether `path` names a .gguf file (by its suffix; the magic bytes are checked on loading)."""
    return isinstance(path, (str, Path)) and Path(path).suffix.lower() == GGUF_SUFFIX


def check_gguf_file(path: Any, *, name: str, where: str) -> Path:
    """An existing file that starts with the GGUF magic bytes (checked before anything parses it)."""
    p = local_path(path, name=name, where=where, what="the path of a .gguf file")
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be a local GGUF file. Got {str(p)!r}, which {what}."
        )
    with p.open("rb") as f:
        head = f.read(len(GGUF_MAGIC))
    if head != GGUF_MAGIC:
        raise InvalidParameterError(
            f"The file {str(p)!r} given to {where} as '{name}' is not a GGUF file: it starts with "
            f"{head!r}, where a GGUF file starts with {GGUF_MAGIC!r}. Give a .gguf file written by "
            f"llama.cpp's converter or the gguf package (a Hugging Face directory loads with load_hf)."
        )
    return p


def require_gguf(where: str) -> None:
    """Refuses, naming the install command, when the optional `gguf` package is missing."""
    try:
        import gguf  # noqa: F401  (the reader transformers' GGUF loader uses)
    except ImportError:
        raise ImportError(
            f"{where} reads GGUF files with the optional 'gguf' package, which is not installed. "
            f"Install it with: {INSTALL_HINT}"
        ) from None


def gguf_architecture(path: Path) -> str:
    """The file's general.architecture (e.g. "llama"), read from its metadata only."""
    from transformers.integrations.gguf import read_gguf_metadata

    metadata, _ = read_gguf_metadata(str(path))
    return str(metadata.get("general.architecture", "?"))


def supported_architectures() -> list[str]:
    """The GGUF architectures this transformers reads without from_pretrained (its legacy GGUF loader)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in _NOT_ARCHITECTURES)


def check_weights_readable(path: Path, *, where: str) -> str:
    """The file's architecture; refuses one whose tensors transformers reads only through from_pretrained
    (its newer GGUF path, which in this version requires `accelerate`), before any model is built."""
    import transformers
    from transformers.integrations.gguf import GGUF_ARCHS

    arch = gguf_architecture(path)
    if arch in GGUF_ARCHS and arch not in supported_architectures():
        raise InvalidParameterError(
            f"The GGUF file {str(path)!r} given to {where} holds architecture {arch!r}, whose tensors "
            f"transformers {transformers.__version__} reads only through from_pretrained(..., gguf_file=...), "
            f"which requires accelerate. Load it there (pip install accelerate) and save it with "
            f"save_pretrained, then give the directory. Architectures read here: {supported_architectures()}."
        )
    return arch


def gguf_config(path: Path, *, where: str) -> Any:
    """The transformers config the file's metadata describes (a PretrainedConfig); refuses an architecture
    transformers cannot read, naming it and the supported ones."""
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(
            str(path.parent), gguf_file=path.name, local_files_only=True, trust_remote_code=False
        )
    except Exception as e:  # unsupported architecture, missing keys, corrupt metadata
        first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        raise InvalidParameterError(
            f"transformers {transformers.__version__} cannot read the GGUF file {str(path)!r} given to {where} "
            f"(architecture {gguf_architecture(path)!r}): {first}. Architectures it reads: "
            f"{supported_architectures()}."
        ) from e


def gguf_config_dict(path: str | Path, *, where: str, name: str = "path") -> dict[str, Any]:
    """gguf_config as the dict config.json would hold (vocab_size, max_position_embeddings, ...)."""
    p = check_gguf_file(path, name=name, where=where)
    require_gguf(where)
    return dict(gguf_config(p, where=where).to_dict())


def load_gguf_tokenizer(
    path: str | Path, *, name: str = "path", where: str = "load_gguf_tokenizer", vocab_size: int | None = None
) -> Any:
    """The tokenizer the GGUF file describes (a transformers tokenizer), built offline from its metadata.

    Tokens transformers adds beyond the model's vocabulary (`vocab_size`, read from the file when None;
    its byte-level builder adds "<|endoftext|>" when the file names other special tokens) are dropped,
    so the tokenizer has no id the model's embedding lacks.
    """
    p = check_gguf_file(path, name=name, where=where)
    require_gguf(where)
    n = vocab_size if vocab_size is not None else int(gguf_config(p, where=where).vocab_size)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
    except Exception as e:  # a tokenizer type transformers cannot build from GGUF metadata
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidParameterError(f"Could not build the tokenizer of {str(p)!r} for {where}: {first}") from e
    return _within_vocab(tok, n)


def _within_vocab(tok: Any, vocab_size: int) -> Any:
    """tok without its added tokens of id >= vocab_size (the same tokenizer when it has none)."""
    if all(i < vocab_size for i in tok.added_tokens_decoder):
        return tok
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.loads(tok.backend_tokenizer.to_str())
    dropped = {t["content"] for t in data["added_tokens"] if t["id"] >= vocab_size}
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < vocab_size]
    roles = ("bos_token", "eos_token", "unk_token", "pad_token")
    kept = {r: getattr(tok, r) for r in roles if getattr(tok, r) not in (None, *dropped)}
    if getattr(tok, "chat_template", None):
        kept["chat_template"] = tok.chat_template
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(data)), **kept)
