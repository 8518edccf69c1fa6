"""Adapters over plain ``nn.Module``s: torchvision/timm-style classifiers, user models, and our
sample transformers (which expose ``forward_with_attentions(ids) -> (logits, [B, H, L, L] list)``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from kdcore.adapters.base import ModelAdapter


class ModuleAdapter(ModelAdapter):
    """A model called as ``model(inputs)`` whose output is the logits (or holds them as ``.logits``
    or a tuple's first item). Attention weights come from ``model.forward_with_attentions`` when the
    model has it."""

    def _run_attentions(self, inputs: Any) -> list[Tensor] | None:
        forward = getattr(self.model, "forward_with_attentions", None)
        if not callable(forward):
            return None
        _, atts = forward(inputs)  # (logits, [B, H, L, L] per layer)
        return list(atts)


def _is_hf_model(model: nn.Module) -> bool:
    transformers = sys.modules.get("transformers")  # never import it just to ask
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def wrap(
    model: nn.Module,
    *,
    name: str,
    kind: str = "classifier",
    layers: Sequence[str] | None = None,
    cam_layer: str | None = None,
    output_size: int | None = None,
    example_input: Any = None,
) -> ModelAdapter:
    """Wrap an in-memory model in the adapter for its kind.

    Hugging Face ``PreTrainedModel``s get the Hugging Face adapter (inputs: ids or a dict with
    ``input_ids``/``attention_mask``); any other module is called as ``model(inputs)``.

    Args:
        model: the module; used as it is, never copied or moved.
        name: display name.
        kind: "classifier" (logits [B, C]), "causal_lm" (logits [B, L, V]) or "encoder" (a
            pooled embedding [B, H]; Hugging Face encoders pool their first token).
        layers: default layers for feature comparisons (else the model's ``feature_layers``
            attribute, else its top-level blocks).
        cam_layer: the layer for Grad-CAM (else the ``cam_layer`` attribute or the last Conv2d).
        output_size: classes or vocabulary size, when neither the model nor a probe input tells.
        example_input: an input the model accepts (to measure the output size).
    """
    if isinstance(model, ModelAdapter):
        raise ValueError(
            f"The 'model' parameter of wrap must be a torch.nn.Module. Got an adapter ({model!r}) instead: "
            f"it is already wrapped."
        )
    cls: type[ModelAdapter] = ModuleAdapter
    if isinstance(model, nn.Module) and _is_hf_model(model):
        from kdcore.adapters.hf import HFAdapter
        from kdcore.adapters.hf_encoder import HFEncoderAdapter

        if kind == "encoder":  # pooled ("cls") embedding as the logits, like load_hf(kind="encoder")
            return HFEncoderAdapter(model, name=name, layers=layers, output_size=output_size)
        cls = HFAdapter
    return cls(
        model,
        name=name,
        kind=kind,
        layers=layers,
        cam_layer=cam_layer,
        output_size=output_size,
        example_input=example_input,
    )
