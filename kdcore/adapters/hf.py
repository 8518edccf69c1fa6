"""The adapter of Hugging Face causal LMs and sequence classifiers (encoders: hf_encoder.py); they are
loaded by `load_hf` (hf_load.py) from a local directory only, or from a .gguf file (gguf.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter
from kdcore.adapters.heads import output_head

HF_KINDS = {"causal_lm": "causal_lm", "sequence_classification": "classifier", "encoder": "encoder"}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class HFAdapter(ModelAdapter):
    """A ``transformers`` model: inputs are token ids [B, L] (LongTensor) or a dict with
    ``input_ids`` and optionally ``attention_mask``; logits [B, L, V] or [B, C].

    Sequence classifiers and encoders given bare ids (no ``attention_mask``) are masked by the
    model's ``config.pad_token_id`` (mask = ids != pad), so padded sentence batches are masked in
    training, validation and probes alike; causal LMs (whose pad id is often EOS) are not."""

    def _prepare(self, inputs: Any) -> dict[str, Any]:
        if isinstance(inputs, Tensor):
            inputs = {"input_ids": inputs}
        if not isinstance(inputs, Mapping) or not isinstance(inputs.get("input_ids"), Tensor):
            raise ValueError(
                f"The 'inputs' parameter of {self.name} must be token ids (a LongTensor [B, L]) or a dict "
                f"with 'input_ids' (and optionally 'attention_mask'). Got {type(inputs).__name__} instead."
            )
        ids = inputs["input_ids"]
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.dim() != 2:
            raise ValueError(
                f"The 'input_ids' of {self.name} must be an integer tensor [B, L]. "
                f"Got shape {tuple(ids.shape)} and dtype {ids.dtype} instead."
            )
        get_embeddings = getattr(self.model, "get_input_embeddings", None)
        embeddings = get_embeddings() if get_embeddings is not None else None
        n = getattr(embeddings, "num_embeddings", None)
        if n is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise ValueError(
                f"The 'input_ids' of {self.name} must be token ids in [0, {n - 1}]. Got values from "
                f"{int(ids.min())} to {int(ids.max())}: were they made by this model's tokenizer?"
            )
        out = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
        pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
        if self.kind != "causal_lm" and "attention_mask" not in out and isinstance(pad, int):
            out["attention_mask"] = (out["input_ids"] != pad).long()  # [B, L] 1 on real tokens
        return out

    def forward_with_attentions(self, inputs: Any) -> tuple[Tensor, list[Tensor]]:
        """(logits, per-layer attention [B, H, L, L]) in one forward pass with the graph kept (training)."""
        prepared = self._prepare(inputs)
        out = self.model(**prepared, output_attentions=True)
        atts = getattr(out, "attentions", None)
        if not atts or any(a is None for a in atts):
            raise ValueError(
                f"{self.name} returned no attention weights: load it with attn_implementation='eager' (load_hf does)."
            )
        return self._pooled(out, prepared), list(atts)

    def _pooled(self, output: Any, inputs: dict[str, Any]) -> Tensor:
        """The adapter's logits from a forward output (the encoder adapter pools its hidden states)."""
        return output.logits

    def _run(self, inputs: dict[str, Any]) -> Tensor:
        return self._pooled(self.model(**inputs), inputs)

    def _run_attentions(self, inputs: dict[str, Any]) -> list[Tensor] | None:
        out = self.model(**inputs, output_attentions=True)
        atts = getattr(out, "attentions", None)
        if not atts or any(a is None for a in atts):
            return None  # an attention implementation that does not return weights
        return list(atts)

    def hidden_and_head(self, inputs: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """The base model's last hidden state [B, L, H] and ``get_output_embeddings()``'s weight and bias.

        Runs ``model.base_model`` (no KV cache), so the head never runs; the graph and modes are the caller's.
        """
        problem = self.hidden_head_problem()
        if problem is not None:
            raise ValueError(problem)
        base = getattr(self.model, "base_model", None)
        if not isinstance(base, nn.Module) or base is self.model:
            return super().hidden_and_head(inputs)
        prepared = self._prepare(inputs)
        if getattr(getattr(base, "config", None), "use_cache", None) is not None:
            prepared = dict(prepared, use_cache=False)
        hidden = base(**prepared).last_hidden_state  # [B, L, H]
        head = output_head(self.model)
        assert head is not None  # hidden_head_problem said so
        return hidden, head.weight, head.bias

    def _config_output_size(self) -> int | None:
        if self.kind == "causal_lm":
            get_head = getattr(self.model, "get_output_embeddings", None)
            head = get_head() if get_head is not None else None
            if isinstance(head, nn.Linear):
                return head.out_features
        return super()._config_output_size()

    def _probe_inputs(self) -> Iterator[Tensor]:
        yield torch.zeros(2, 4, dtype=torch.long)

    def _reinit(self, model: nn.Module) -> None:
        init = getattr(model, "_init_weights", None)
        super()._reinit(model)
        if callable(init):
            model.apply(init)  # the architecture's own initialisation (norm weights, embeddings)
        tie_weights = getattr(model, "tie_weights", None)
        if tie_weights is not None:
            tie_weights()


def _check_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(
        f"The 'dtype' parameter of load_hf must be None, a torch.dtype or one of {list(_DTYPES)}. Got {dtype!r} instead."
    )
