"""Hugging Face encoders (BERT-style ``AutoModel``s): the pooled sentence embedding as the output.

``logits()`` of an encoder adapter is the pooled embedding [B, H] of the last hidden state
[B, L, H]:

- pooling="cls":  the first token's hidden state (``last_hidden_state[:, 0]``: [CLS] for BERT);
- pooling="mean": the mean of the hidden states over the tokens the attention mask keeps
  (padding left out; a row with no kept token gives zeros).

Per-token features come from ``capture()`` of the encoder's layers (``embeddings``,
``encoder.layer.N`` for BERT: [B, L, H] each), which ``default_layers()`` lists; the pooled
embedding is also available as the layer ``"pooled"`` ([B, H]) in ``capture``/``forward_features``,
so feature objectives and CKA can name it like any layer. Attention masks: a dict input may carry
``attention_mask``; bare ids get ``ids != config.pad_token_id`` (see ``HFAdapter._prepare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.adapters.base import eval_mode
from kdcore.adapters.hf import HFAdapter
from kdcore.hooks import capture_features

POOLINGS = ("cls", "mean")
POOLED = "pooled"  # the layer name under which capture() and forward_features() return the pooled embedding


def pool(hidden: Tensor, mask: Tensor | None, pooling: str) -> Tensor:
    """Sentence embeddings [B, H] of hidden states [B, L, H]: the first token ("cls"), or the mean over
    the positions where mask [B, L] is nonzero ("mean"; all positions when mask is None)."""
    if pooling == "cls":
        return hidden[:, 0]
    if mask is None:
        return hidden.mean(dim=1)
    keep = mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


def check_pooling(pooling: Any, where: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(
            f"The 'pooling' parameter of {where} must be one of {list(POOLINGS)}. Got {pooling!r} instead."
        )
    return str(pooling)


def _block_layers(model: nn.Module) -> list[str]:
    """The embedding module and every block of the model's largest ModuleList (the transformer layers)."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        return []
    name, blocks = max(lists, key=lambda kv: len(kv[1]))
    embeddings = [n for n, _ in model.named_children() if n in ("embeddings", "embed_tokens", "wte")]
    return embeddings + [f"{name}.{i}" for i in range(len(blocks))]


class HFEncoderAdapter(HFAdapter):
    """A Hugging Face encoder: inputs are ids [B, L] or a dict with ``input_ids`` / ``attention_mask``;
    logits are the pooled embedding [B, H] (``pooling`` "cls" or "mean")."""

    def __init__(self, model: nn.Module, *, name: str, pooling: str = "cls", **kwargs: Any) -> None:
        super().__init__(model, name=name, kind="encoder", **kwargs)
        self.pooling = check_pooling(pooling, type(self).__name__)

    def _pooled(self, output: Any, inputs: dict[str, Any]) -> Tensor:
        return pool(output.last_hidden_state, inputs.get("attention_mask"), self.pooling)  # [B, H]

    def _config_output_size(self) -> int | None:
        hidden = getattr(getattr(self.model, "config", None), "hidden_size", None)
        return hidden if isinstance(hidden, int) and not isinstance(hidden, bool) and hidden > 0 else None

    def default_layers(self) -> list[str]:
        """Layers given, the model's ``feature_layers``, else the embeddings and every transformer block."""
        if self._layers is not None or getattr(self.model, "feature_layers", None):
            return super().default_layers()
        return _block_layers(self.model) or super().default_layers()

    def layer_names(self) -> list[str]:
        return [*super().layer_names(), POOLED]

    def capture(self, inputs: Any, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        layers = self.default_layers() if layers is None else list(layers)
        real = [n for n in layers if n != POOLED]
        with torch.no_grad(), eval_mode(self.model), capture_features(self.model, real, detach=True) as feats:
            pooled = self._run(self._prepare(inputs))
        feats[POOLED] = pooled.detach().cpu()
        return self._complete(feats, layers)

    def forward_features(self, inputs: Any, layers: Sequence[str] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        layers = self.default_layers() if layers is None else list(layers)
        real = [n for n in layers if n != POOLED]
        logits, feats = super().forward_features(inputs, real)
        feats[POOLED] = logits
        return logits, {n: feats[n] for n in layers}
