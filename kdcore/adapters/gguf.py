"""GGUF causal LMs (llama.cpp's file format), loaded from their file, and saved back as Hugging Face directories.

The model is built from the config the file's metadata describes (`AutoModelForCausalLM.from_config`, eager
attention), and its tensors are read, dequantised and renamed by transformers' own GGUF reader
(`load_gguf_checkpoint`, which undoes llama.cpp's q/k row permutation), then loaded with `load_state_dict`.
That path needs the optional `gguf` package only: `from_pretrained(..., gguf_file=...)` would refuse to run
without `accelerate`, which it needs only for device maps and offloading, never used here. Quantised
tensors (Q4_K, Q8_0, ...) are dequantised to float32. Nothing is downloaded and no code from the file runs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdcore.adapters.gguf_files import (
    check_gguf_file,
    check_weights_readable,
    gguf_architecture,
    gguf_config,
    load_gguf_tokenizer,
    require_gguf,
    supported_architectures,
)
from kdcore.adapters.hf import HFAdapter, _check_dtype
from kdcore.adapters.hf_files import check_new_dir
from kdcore.validation import InvalidParameterError


def load_gguf(
    path: str | Path,
    *,
    kind: str = "causal_lm",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    name: str | None = None,
) -> HFAdapter:
    """Load a causal LM from a local GGUF file into an adapter (kind "causal_lm", logits [B, L, V]).

    Args:
        path: a .gguf file (checked by its magic bytes).
        kind: "causal_lm" (a GGUF file holds a language model; no classifier head).
        device: where the model is placed.
        dtype: parameter dtype (None: float32, what dequantised tensors are; "float16", "bfloat16"
            or a torch.dtype).
        name: display name (default: the file's name without .gguf).

    Needs the optional `gguf` package (`pip install -e '.[gguf]'`); not `accelerate`.
    """
    where = "load_gguf"
    if kind != "causal_lm":
        raise InvalidParameterError(
            f"The 'kind' parameter of {where} must be 'causal_lm': a GGUF file holds a language model, "
            f"with no classifier head. Got {kind!r} instead."
        )
    p = check_gguf_file(path, name="path", where=where)
    dt = _check_dtype(dtype)
    require_gguf(where)
    model = gguf_model(p, where=where)
    if dt is not None:
        model.to(dt)
    model.to(torch.device(device))
    return HFAdapter(model, name=name or p.stem, kind="causal_lm")


def gguf_model(path: Path, *, where: str) -> nn.Module:
    """The file's causal LM in eval mode (float32, CPU): config from its metadata, tensors dequantised."""
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    arch = check_weights_readable(path, where=where)
    config = gguf_config(path, where=where)
    try:
        model: nn.Module = transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", trust_remote_code=False
        )
    except ValueError as e:  # a config with no causal-LM class (an encoder-decoder such as t5)
        raise InvalidParameterError(
            f"The GGUF file {str(path)!r} given to {where} holds architecture {arch!r} (model_type "
            f"{config.model_type!r}), which transformers has no causal-LM class for: {_first_line(e)}"
        ) from e
    try:
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    except Exception as e:  # a tensor type gguf cannot dequantise, tensors the loader cannot map
        raise InvalidParameterError(
            f"Could not read the tensors of the GGUF file {str(path)!r} for {where} (architecture "
            f"{arch!r}): {_first_line(e)}. Architectures transformers {transformers.__version__} reads "
            f"without accelerate: {supported_architectures()}."
        ) from e
    _load_tensors(model, tensors, path, where=where)
    return model.float().eval()


def _first_line(e: BaseException) -> str:
    """An exception's first line without its closing full stop (its type's name when it has no text)."""
    text = str(e).strip()
    return text.splitlines()[0].rstrip(".") if text else type(e).__name__


def _load_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, *, where: str) -> None:
    """tensors into model; refuses any parameter the file does not give (tied copies excepted) and any
    tensor of a shape the config does not expect."""
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # size mismatches between the metadata's config and the tensors
        raise InvalidParameterError(
            f"The tensors of the GGUF file {str(path)!r} given to {where} do not fit the model its metadata "
            f"describes: {str(e).strip().splitlines()[-1].strip()}"
        ) from None
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()
    state = model.state_dict()
    loaded = {state[k].data_ptr() for k in tensors if k in state}
    missing = [k for k in result.missing_keys if state[k].data_ptr() not in loaded]
    if missing:
        raise InvalidParameterError(
            f"The GGUF file {str(path)!r} given to {where} has no tensor for {len(missing)} of the model's "
            f"parameters, such as {missing[:3]}: it is incomplete or of another architecture than its metadata says."
        )


@dataclass
class ConvertedGGUF:
    """What gguf_to_hf wrote: the directory, the architecture, whether the embeddings are tied, the files."""

    path: Path
    architecture: str
    model_type: str
    tied_embeddings: bool
    files: list[str] = field(default_factory=list)


def gguf_to_hf(path: str | Path, out: str | Path) -> ConvertedGGUF:
    """Save a GGUF causal LM as a Hugging Face directory: model (safetensors), config and tokenizer.

    `out` must be new or empty; it then loads with `load_hf(out)` and with transformers'
    `from_pretrained`. Tied input/output embeddings stay tied (saved once, tied again on loading).
    """
    where = "gguf_to_hf"
    p = check_gguf_file(path, name="path", where=where)
    out_dir = check_new_dir(out, name="out", where=where)
    require_gguf(where)
    model = gguf_model(p, where=where)
    config: Any = model.config
    tokenizer = load_gguf_tokenizer(p, where=where, vocab_size=int(config.vocab_size))
    created = not out_dir.exists()
    try:
        model.save_pretrained(str(out_dir))  # type: ignore[operator]
        tokenizer.save_pretrained(str(out_dir))
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)  # no half-written directory left behind
        raise
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()  # type: ignore[operator]
    return ConvertedGGUF(
        path=out_dir,
        architecture=gguf_architecture(p),
        model_type=str(config.model_type),
        tied_embeddings=head is not None and head.weight is emb.weight,
        files=sorted(f.name for f in out_dir.iterdir()),
    )
