"""Feature methods with learned heads: MGD (methods/14 §14.1) and FAM-KD (§14.4).

Each mapped layer pair gets a head (MGD's aligner + generator, FAM's frequency attention module),
built by `Method.modules` from a probe pass, trained with the student and dropped after training.
The step calls the tested loss (kdcore.losses.mgd / kdcore.losses.famkd) once per pair.
"""

from __future__ import annotations

from collections.abc import Callable

from kdcore.methods.params import Param, choice, flag
from kdcore.methods.step import Component, StepTensors, layer_key
from kdcore.methods.table import Method, register_method

MGD_SECTION = "methods/14-feature-and-weight.md §14.1"
FAM_SECTION = "methods/14-feature-and-weight.md §14.4"


def mgd_key(student_layer: str) -> str:
    return f"mgd__{layer_key(student_layer)}"


def fam_key(student_layer: str) -> str:
    return f"famkd__{layer_key(student_layer)}"


def _layers(what: str) -> Param:
    return Param(
        "layers", None, f"{{student_layer: teacher_layer}}: the feature maps {what}", kind="layers", required=True
    )


def _heads(b: StepTensors, p: dict, key: Callable[[str], str], make: Callable[..., dict]) -> dict:
    """The trained heads from the batch (the runner's); a fresh seeded set when the batch has none
    (a direct call of the step outside a run: untrained heads, for tests and views)."""
    import torch

    if b.projectors is not None and all(key(s) in b.projectors for s in p["layers"]):
        return {s: b.projectors[key(s)] for s in p["layers"]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        built = make(p, b.student_feats, b.teacher_feats)
    return {s: built[key(s)].to(b.student_feats[s].device) for s in p["layers"]}


def _conv_problems(name: str, p: dict, s_feats: dict, t_feats: dict, same_size: bool) -> list[str]:
    out = []
    for s, t in p["layers"].items():
        fs, ft = s_feats[s], t_feats[t]
        if fs.dim() != 4 or ft.dim() != 4:
            out.append(
                f"{name} needs conv feature maps [B, C, H, W]; student {s!r} gives {tuple(fs.shape)}, teacher "
                f"{t!r} gives {tuple(ft.shape)}: map conv layers instead"
            )
        elif same_size and fs.shape[2:] != ft.shape[2:]:
            out.append(
                f"{name} needs the same spatial size on both sides (it does not resize); student {s!r} gives "
                f"{tuple(fs.shape[2:])}, teacher {t!r} gives {tuple(ft.shape[2:])}: map layers of one "
                f"resolution (e.g. the last stages)"
            )
    return out


# ---- MGD ----------------------------------------------------------------------------------------


def _mgd_modules(p: dict, s_feats: dict, t_feats: dict) -> dict:
    from kdcore.losses.mgd import MGDHead

    return {mgd_key(s): MGDHead(int(s_feats[s].shape[1]), int(t_feats[t].shape[1])) for s, t in p["layers"].items()}


def _mgd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses.mgd import mgd_alpha, mgd_loss

    heads, out = _heads(b, p, mgd_key, _mgd_modules), []
    for s, t in p["layers"].items():
        head, ft = heads[s], b.teacher_feats[t]
        alpha = mgd_alpha(p["alpha"], tuple(ft.shape)) if p["scale_alpha"] else p["alpha"]
        lam = p["lambda_mask"] if head.training else 0.0  # the mask is drawn only in training
        value = mgd_loss(
            b.student_feats[s], ft, head.generator, head.align, alpha=alpha, lambda_mask=lam, mask=p["mask"]
        )
        out.append((f"mgd/{s}", 1.0, value))
    return out


def _mgd_shapes(p: dict, s_feats: dict, t_feats: dict) -> list[str]:
    return _conv_problems("mgd", p, s_feats, t_feats, same_size=True)


register_method(
    Method(
        "mgd",
        _mgd,
        "kdcore.losses.mgd:mgd_loss",
        "MGD: a generator rebuilds the teacher's feature from the randomly masked student feature",
        MGD_SECTION,
        also_calls=("kdcore.losses.mgd:mgd_mask", "kdcore.losses.mgd:mgd_alpha"),
        ce_default=True,
        aliases=("masked_generative", "mask_distill"),
        source="Yang et al., ECCV 2022, arXiv 2205.01529 (code github.com/yzd-v/MGD)",
        uses_layers=True,
        modules=_mgd_modules,
        shape_check=_mgd_shapes,
        params=(
            _layers("matched (one pair = the last stages, e.g. conv2: conv3 on digits)"),
            Param("alpha", 7e-5, "weight α of L_MGD (authors' classification value)", low=0.0),
            flag(
                "scale_alpha",
                True,
                "multiply α by 512·7·7/(C_t·H·W): the authors' per-element weight on a smaller feature",
            ),
            Param("lambda_mask", 0.15, "mask ratio λ: the fraction of channels/positions masked", low=0.0, high=1.0),
            choice("mask", "channel", "mask channels (classification) or spatial positions", ("channel", "spatial")),
        ),
    )
)


# ---- FAM-KD --------------------------------------------------------------------------------------


def _fam_modules(p: dict, s_feats: dict, t_feats: dict) -> dict:
    from kdcore.losses.famkd import FAMModule

    out = {}
    for s, t in p["layers"].items():
        cs, (ct, h, w) = int(s_feats[s].shape[1]), (int(d) for d in t_feats[t].shape[1:])
        out[fam_key(s)] = FAMModule(cs, ct, h, w, cuton=p["cuton"])
    return out


def _famkd(b: StepTensors, p: dict) -> list[Component]:
    from kdcore.losses.famkd import fam_kd_loss

    heads = _heads(b, p, fam_key, _fam_modules)
    kw = dict(weight=p["weight"], epoch=b.epoch, warmup_epochs=p["warmup_epochs"])
    return [
        (f"famkd/{s}", 1.0, fam_kd_loss([b.student_feats[s]], [b.teacher_feats[t]], [heads[s]], **kw))
        for s, t in p["layers"].items()
    ]


def _fam_shapes(p: dict, s_feats: dict, t_feats: dict) -> list[str]:
    return _conv_problems("famkd", p, s_feats, t_feats, same_size=False)


register_method(
    Method(
        "famkd",
        _famkd,
        "kdcore.losses.famkd:fam_kd_loss",
        "FAM-KD: a learned global frequency filter with a high-pass maps student to teacher features",
        FAM_SECTION,
        also_calls=("kdcore.losses.famkd:highpass_keep",),
        ce_default=True,
        aliases=("fam_kd", "frequency_attention"),
        source="Pham et al., WACV 2024, arXiv 2403.05894 (code github.com/cuong-pv/FAM-KD)",
        uses_layers=True,
        modules=_fam_modules,
        shape_check=_fam_shapes,
        params=(
            _layers("matched, one frequency attention module each (e.g. conv1: conv2, conv2: conv3 on digits)"),
            Param(
                "cuton",
                0.1,
                "high-pass cut-on c: removes the (2⌊c⌊H/2⌋⌋)×(2⌊c⌊W/2⌋⌋) low block (0.1: nothing on maps < 20 px)",
                low=0.0,
                high=0.5,
                low_open=True,
            ),
            Param("weight", 1.0, "weight w of L_FAM", low=0.0),
            Param("warmup_epochs", 20, "E_w: L_FAM ramps as min(epoch/E_w, 1) (0: no ramp)", kind="int", low=0),
        ),
    )
)
