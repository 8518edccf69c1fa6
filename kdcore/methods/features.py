"""Feature and attention methods: FitNets, attention transfer, MiniLM attention KL (METHODS.md §7).

Each step calls the tested loss of kdcore.losses once per mapped layer.
"""

from __future__ import annotations

from kdcore.methods.params import Param, choice, flag
from kdcore.methods.step import Component, StepTensors, layer_key
from kdcore.methods.table import Method, register_method

PROJECTORS = ("auto", "linear", "none")


def layers(required: bool, help: str = "{student_layer: teacher_layer}: the features matched") -> Param:
    return Param("layers", None, help, kind="layers", required=required)


def _feature_l2(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import feature_cosine_loss, feature_l2_loss

    loss = feature_cosine_loss if p["cosine"] else feature_l2_loss
    out = []
    for s_name, t_name in p["layers"].items():
        key = layer_key(s_name)
        proj = b.projectors[key] if b.projectors is not None and key in b.projectors else None
        out.append((f"feat_l2/{s_name}", 1.0, loss(b.student_feats[s_name], b.teacher_feats[t_name], proj)))
    return out


def _feature_l2_projectors(p: dict, s_feats: dict, t_feats: dict) -> dict:
    """FitNets' learned projector per mapped student layer whose width differs (every one with 'linear')."""
    from kdcore.losses import make_projector

    if p["projector"] == "none":
        return {}
    return {
        layer_key(s): make_projector(tuple(s_feats[s].shape), tuple(t_feats[t].shape))
        for s, t in p["layers"].items()
        if s_feats[s].shape[1:] != t_feats[t].shape[1:] or p["projector"] == "linear"
    }


def _feature_l2_shapes(p: dict, s_feats: dict, t_feats: dict) -> list[str]:
    if p["projector"] != "none":
        return []
    return [
        f"feature_l2 with projector 'none' needs equal feature shapes; student {s!r} gives "
        f"{tuple(s_feats[s].shape[1:])}, teacher {t!r} gives {tuple(t_feats[t].shape[1:])}: use projector 'auto'"
        for s, t in p["layers"].items()
        if s_feats[s].shape[1:] != t_feats[t].shape[1:]
    ]


def _at(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import attention_transfer_loss

    return [
        (f"at/{s}", 1.0, attention_transfer_loss(b.student_feats[s], b.teacher_feats[t], p=p["p"]))
        for s, t in p["layers"].items()
    ]


def _at_shapes(p: dict, s_feats: dict, t_feats: dict) -> list[str]:
    out = []
    for s, t in p["layers"].items():
        for who, name, f in (("student", s, s_feats[s]), ("teacher", t, t_feats[t])):
            if f.dim() != 4:
                out.append(
                    f"attention transfer needs conv features [B, C, H, W], but the {who}'s layer "
                    f"{name!r} gives shape {tuple(f.shape)}: map conv layers instead"
                )
    return out


def _attn_kl(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses import attention_kl_loss

    if not b.student_attn or not b.teacher_attn:
        raise ValueError("objective 'attn_kl' needs attention maps from both models; the adapters returned none.")
    pairs = p["layers"] or {str(len(b.student_attn) - 1): str(len(b.teacher_attn) - 1)}
    # attention_kl_loss compares head-averaged maps when the head counts differ; padded query rows do not count
    mask = b.attention_mask
    return [
        (f"attn_kl/{s}", 1.0, attention_kl_loss(b.student_attn[int(s)], b.teacher_attn[int(t)], mask=mask))
        for s, t in pairs.items()
    ]


def _attn_kl_check(p: dict, where: str) -> list[str]:
    bad = [k for k, v in (p["layers"] or {}).items() if not (k.isdigit() and v.isdigit())]
    if bad:
        return [f"{where}.layers of attn_kl maps attention layer indices such as {{'1': '3'}}; got {p['layers']!r}"]
    return []


register_method(
    Method(
        "feature_l2",
        _feature_l2,
        "kdcore.losses:feature_l2_loss",
        "FitNets: match a layer's features (with a projector)",
        "METHODS.md §7",
        also_calls=("kdcore.losses:feature_cosine_loss", "kdcore.losses:make_projector"),
        tasks=("classification", "encoder"),
        ce_default=True,
        aliases=("fitnet",),
        source="Romero et al. 2015, arXiv 1412.6550",
        uses_layers=True,
        modules=_feature_l2_projectors,
        shape_check=_feature_l2_shapes,
        params=(
            layers(required=True),
            choice(
                "projector",
                "auto",
                "learned projector: where widths differ (auto), always (linear) or never",
                PROJECTORS,
            ),
            flag("cosine", False, "match 1 − cos instead of the squared L2 distance"),
        ),
    )
)

register_method(
    Method(
        "at",
        _at,
        "kdcore.losses:attention_transfer_loss",
        "Attention transfer: match conv attention maps",
        "METHODS.md §7",
        ce_default=True,
        aliases=("attention_transfer",),
        source="Zagoruyko & Komodakis 2017, arXiv 1612.03928",
        uses_layers=True,
        shape_check=_at_shapes,
        params=(
            layers(required=True, help="{student_conv_layer: teacher_conv_layer}: the feature maps matched"),
            Param("p", 2.0, "exponent p of the attention map mean_c |F_c|^p", low=0.0, low_open=True),
        ),
    )
)

register_method(
    Method(
        "attn_kl",
        _attn_kl,
        "kdcore.losses:attention_kl_loss",
        "MiniLM: KL between transformer attention rows",
        "METHODS.md §7",
        tasks=("causal_lm", "encoder", "classification"),
        ce_default=True,
        aliases=("attention_kl",),
        source="Wang et al. 2020, arXiv 2002.10957",
        needs_attention=True,
        check=_attn_kl_check,
        params=(layers(required=False, help="{student_layer_index: teacher_layer_index} (default: the last layers)"),),
    )
)
