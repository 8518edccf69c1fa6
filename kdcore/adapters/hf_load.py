"""`load_hf`: a Hugging Face model from a local directory (or a .gguf file) into its adapter.

Models load with ``local_files_only=True`` (nothing is downloaded), ``trust_remote_code=False``
(no code from the directory runs), ``weights_only=True`` for any pickled ``.bin`` file, and
``attn_implementation="eager"`` so that attention weights can be returned. The adapters live in
hf.py (causal LMs, sequence classifiers) and hf_encoder.py (encoders); GGUF files in gguf.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdcore.adapters.gguf_files import is_gguf_path
from kdcore.adapters.hf import HF_KINDS, HFAdapter, _check_dtype
from kdcore.adapters.hf_encoder import HFEncoderAdapter, check_pooling
from kdcore.adapters.hf_files import check_model_dir


def _from_pretrained(transformers: Any, p: Path, kind: str, dtype: torch.dtype | None) -> nn.Module:
    """The model of a checked directory: local files only, no remote code, eager attention."""
    autos = {"causal_lm": "AutoModelForCausalLM", "sequence_classification": "AutoModelForSequenceClassification"}
    auto = getattr(transformers, autos.get(kind, "AutoModel"))
    kwargs: dict[str, Any] = dict(
        local_files_only=True, trust_remote_code=False, attn_implementation="eager", weights_only=True
    )
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        return auto.from_pretrained(str(p), **kwargs)
    except Exception as e:  # bad config.json, corrupt or mismatched weights, unsupported architecture
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"Could not load a Hugging Face {kind} model from {str(p)!r}: {first}") from e


def load_hf(
    path: str | Path,
    *,
    kind: str = "causal_lm",
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    name: str | None = None,
    pooling: str = "cls",
) -> HFAdapter:
    """Load a Hugging Face model from a local directory into an adapter.

    Args:
        path: a directory written by ``save_pretrained`` (config.json plus weights), or a ``.gguf``
            file (loaded by kdcore.adapters.gguf.load_gguf; needs the optional ``gguf`` package).
        kind: "causal_lm" (logits [B, L, V]), "sequence_classification" (logits [B, C]; the
            adapter's kind is then "classifier") or "encoder" (a transformers ``AutoModel`` such as
            BertModel; logits are the pooled sentence embedding [B, H]: see kdcore.adapters.hf_encoder).
        device: where the model is placed.
        dtype: parameter dtype (None keeps the saved one; "float16", "bfloat16" or a torch.dtype).
        name: display name (default: the directory's name).
        pooling: encoders only: "cls" (the first token's last hidden state) or "mean" (the mean of
            the last hidden states over the attention mask).

    Nothing is downloaded and no code from the directory runs. Attention uses the eager
    implementation, so ``attentions()`` returns weights [B, H, L, L] per layer.
    """
    if is_gguf_path(path):  # a .gguf file: its own loader (kdcore.adapters.gguf)
        from kdcore.adapters.gguf import load_gguf

        return load_gguf(path, kind=kind, device=device, dtype=dtype, name=name)
    if kind not in HF_KINDS:
        raise ValueError(f"The 'kind' parameter of load_hf must be one of {list(HF_KINDS)}. Got {kind!r} instead.")
    p = check_model_dir(path, name="path", where="load_hf")
    dtype = _check_dtype(dtype)
    import transformers  # imported here: importing kdcore must stay fast

    if kind == "encoder":
        check_pooling(pooling, "load_hf")
    model = _from_pretrained(transformers, p, kind, dtype)
    model.eval()
    model.to(torch.device(device))
    if kind == "encoder":
        return HFEncoderAdapter(model, name=name or p.name, pooling=pooling)
    return HFAdapter(model, name=name or p.name, kind=HF_KINDS[kind])
