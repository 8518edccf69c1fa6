"""Embedding distillation for encoders and Hugging Face sequence classifiers: the student's pooled
sentence embedding matched to the teacher's by cosine or MSE, through a learned linear projector
where the widths differ (kdcore.losses.embedding).

On the "encoder" task the default layers {"pooled": "pooled"} are the encoder adapters' pooled
embeddings [B, H] (their logits). On a classifier pair, map layers whose output is a sentence
embedding, e.g. {"bert.pooler": "bert.pooler"}; token features [B, L, H] are pooled by their first
token ([CLS]).
"""

from __future__ import annotations

from typing import Any

from kdcore.methods.params import Param, choice
from kdcore.methods.step import Component, StepTensors, layer_key
from kdcore.methods.table import Method, register_method

POOLED_LAYERS = {"pooled": "pooled"}
_PREFIX = "embed_distill__"  # projector keys: _PREFIX + layer_key(student layer)
POOLED_PROJECTOR = _PREFIX + "pooled"  # the projector of the default layers (the runner's val_cos uses it)


def _sentence(features: Any) -> Any:
    """[B, D] as it is; token features [B, L, D] -> their first token [B, D]."""
    return features[:, 0] if features.dim() == 3 else features


def _embed_distill(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import embedding_distill_loss

    out = []
    for s, t in p["layers"].items():
        key = _PREFIX + layer_key(s)
        proj = b.projectors[key] if b.projectors is not None and key in b.projectors else None
        es, et = _sentence(b.student_feats[s]), _sentence(b.teacher_feats[t])
        out.append((f"embed/{s}", 1.0, embedding_distill_loss(es, et, loss=p["loss"], projector=proj)))
    return out


def _embed_projectors(p: dict, s_feats: dict, t_feats: dict) -> dict:
    """A learned linear map D_s -> D_t per mapped layer whose widths differ."""
    from torch import nn

    out = {}
    for s, t in p["layers"].items():
        d_s, d_t = int(s_feats[s].shape[-1]), int(t_feats[t].shape[-1])
        if d_s != d_t:
            out[_PREFIX + layer_key(s)] = nn.Linear(d_s, d_t, bias=False)
    return out


def _embed_shapes(p: dict, s_feats: dict, t_feats: dict) -> list[str]:
    return [
        f"embed_distill needs sentence embeddings [B, D] or token features [B, L, D]; the {who}'s layer "
        f"{name!r} gives shape {tuple(f.shape)}: map a pooled or transformer layer instead"
        for s, t in p["layers"].items()
        for who, name, f in (("student", s, s_feats[s]), ("teacher", t, t_feats[t]))
        if f.dim() not in (2, 3)
    ]


def _embed_fit(task: str, p: dict) -> list[str]:
    if task == "classification" and p["layers"] == POOLED_LAYERS:
        return [
            "objective 'embed_distill' on a classifier pair needs the layers holding the sentence embedding, "
            "e.g. params layers {'bert.pooler': 'bert.pooler'} (the 'pooled' layer is the encoder adapters')"
        ]
    return []


register_method(
    Method(
        "embed_distill",
        _embed_distill,
        "kdcore.losses:embedding_distill_loss",
        "Embedding distillation: cosine or MSE of pooled sentence embeddings",
        "METHODS.md §7 (feature matching; the pooled form: kdcore/losses/embedding.py)",
        tasks=("encoder", "classification"),
        aliases=("embedding_distill",),
        source="Reimers & Gurevych 2020, arXiv 2004.09813; Sanh et al. 2019, arXiv 1910.01108",
        uses_layers=True,
        modules=_embed_projectors,
        shape_check=_embed_shapes,
        fit=_embed_fit,
        params=(
            Param(
                "layers",
                POOLED_LAYERS,
                "{student_layer: teacher_layer} holding sentence embeddings (default: the encoders' pooled output)",
                kind="layers",
            ),
            choice("loss", "cosine", "1 − cos (cosine) or mean squared error (mse)", ("cosine", "mse")),
        ),
    )
)
