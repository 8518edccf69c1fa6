"""Class activation maps (Grad-CAM), teacher against student, and how well they agree and localise.

What the view shows
-------------------
For chosen images and classes, the Grad-CAM of the teacher and of the student (Selvaraju et al.
2017, arXiv 1610.02391), overlaid on the image: α_k = mean over positions of ∂y_c/∂A_k at the
model's last conv layer, CAM = ReLU(Σ_k α_k A_k), upsampled bilinearly to the image size, computed
with Captum's ``LayerGradCam``. For display each map is min-max normalised (all zero if flat).

- **Agreement** between the two maps per image: Pearson correlation, and the IoU of their top-q %
  regions (q = 20 by default).
- **Localisation** against a ground-truth mask (the shapes dataset has one per class): the
  pointing game (the map's maximum falls inside the mask; Zhang et al. 2016, arXiv 1608.00507) and
  the energy inside the mask (share of the map's sum that lies inside it), per model, over a set of
  images.

What to look for
----------------
A student can match the teacher's accuracy while looking at different evidence: low Pearson or
IoU on correctly classified images means it does. A student whose pointing game or energy in the
mask is well below the teacher's relies on context or shortcuts rather than on the object.

Definitions used here: the top-q % region of a map is every pixel whose value is at least the
k-th largest value, k = ceil(q/100 · pixels) (ties all enter, so a flat map's region is the whole
image); the pointing game takes the first maximum in row-major order; Pearson is NaN when a map is
constant and the energy is NaN when a map sums to 0 (a class with no positive evidence); aggregates
skip NaN and report how many images they cover. Energy uses the raw, non-negative CAM (min-max
normalisation would change the shares).

The models are shared (the app caches them across sessions): Grad-CAM runs inside kdcore's eval
scope (``kdcore.adapters.eval_mode``), which puts the model in eval mode and restores every
module's mode and every parameter's ``requires_grad`` afterwards; Captum removes its hooks itself (in ``finally``), Grad-CAM calls are
serialised by a lock, and the input is never modified. No gradient reaches the parameters' ``.grad``
(Captum differentiates with ``torch.autograd.grad`` with respect to the layer's output only).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from captum.attr import LayerAttribution, LayerGradCam
from plotly.subplots import make_subplots
from torch import Tensor, nn

from analyses import _style
from kdcore.adapters import eval_mode

_GRAD_CAM_LOCK = threading.RLock()  # one Grad-CAM at a time: two would race on restoring the shared model's modes


# --------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------
def _resolve_layer(model: nn.Module, layer: Any, where: str) -> nn.Module:
    if isinstance(layer, nn.Module):
        if not any(layer is m for m in model.modules()):
            raise ValueError(f"The 'layer' argument of {where} is a module that is not part of the model.")
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            raise ValueError(
                f"The 'layer' argument of {where} names no submodule of the model: got {layer!r}. "
                f"Conv layers it has: {names}."
            ) from None
    raise ValueError(
        f"The 'layer' argument of {where} must be a submodule or its dotted name (a conv layer). "
        f"Got {type(layer).__name__} instead."
    )


def _check_images(inputs: Any, where: str) -> Tensor:
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, Tensor) or inputs.dim() != 4 or inputs.numel() == 0 or not inputs.is_floating_point():
        got = f"shape {tuple(inputs.shape)}" if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(
            f"The 'inputs' argument of {where} must be a float image batch [N, C, H, W]. Got {got} instead."
        )
    return inputs


def _check_targets(targets: Any, n: int, where: str) -> Tensor:
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        return torch.full((n,), int(targets), dtype=torch.long)
    if isinstance(targets, (list, tuple, np.ndarray)):
        targets = torch.as_tensor(np.asarray(targets))
    if (
        not isinstance(targets, Tensor)
        or targets.is_floating_point()
        or targets.dtype == torch.bool
        or targets.shape != (n,)
    ):
        got = f"shape {tuple(targets.shape)}, dtype {targets.dtype}" if isinstance(targets, Tensor) else repr(targets)
        raise ValueError(
            f"The 'targets' argument of {where} must be one class index per image (an int or an integer "
            f"tensor of shape [{n}]). Got {got} instead."
        )
    return targets.long().cpu()


def grad_cam(model: nn.Module, layer: Any, inputs: Any, targets: Any) -> Tensor:
    """Grad-CAM of ``model`` at ``layer`` for class ``targets`` (an int or [N]), upsampled to the input.

    Captum's ``LayerGradCam(..., relu_attributions=True)`` then ``LayerAttribution.interpolate``
    (bilinear) to the input's H×W. Returns the raw, non-negative maps [N, H, W] (float32, detached,
    CPU). The model is left exactly as it was (``kdcore.adapters.eval_mode`` restores every module's
    mode and every parameter's ``requires_grad`` in ``finally``).
    """
    where = "grad_cam"
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"The 'model' argument of {where} must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    x = _check_images(inputs, where)
    module = _resolve_layer(model, layer, where)
    tgt = _check_targets(targets, x.shape[0], where)
    device = next(model.parameters(), torch.empty(0)).device
    x = x.detach().clone().to(device)
    with _GRAD_CAM_LOCK, eval_mode(model):
        cam = LayerGradCam(model, module).attribute(x, target=tgt.to(device).tolist(), relu_attributions=True)
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")  # [N, 1, H, W]
    return cam.detach().to("cpu", torch.float32)[:, 0]


def normalize_maps(maps: Any) -> Tensor:
    """Min-max normalise each map [N, H, W] to [0, 1]; a flat map becomes all zero."""
    m = torch.as_tensor(maps).to(torch.float64)
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = (hi - lo).view(-1, 1, 1)
    out = (m - lo.view(-1, 1, 1)) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.zeros_like(out))


# --------------------------------------------------------------------------------------------
# Agreement and localisation measures (per image)
# --------------------------------------------------------------------------------------------
def _check_pair(a: Any, b: Any, where: str) -> tuple[Tensor, Tensor]:
    a, b = torch.as_tensor(a).to(torch.float64), torch.as_tensor(b).to(torch.float64)
    if a.dim() != 3 or a.shape != b.shape or a.numel() == 0:
        raise ValueError(
            f"The maps passed to {where} must both have shape [N, H, W]. Got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    return a, b


def pearson(a: Any, b: Any) -> Tensor:
    """Pearson correlation of two sets of maps [N, H, W] -> [N] (NaN where either map is constant)."""
    a, b = _check_pair(a, b, "pearson")
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(
        den > 0, (a * b).sum(1) / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, math.nan)
    )


def top_region(maps: Any, q: float = 20.0) -> Tensor:
    """The top-q % region of each map [N, H, W] -> bool [N, H, W]: pixels ≥ the k-th largest value,
    k = ceil(q/100 · H·W)."""
    if not 0 < float(q) <= 100:
        raise ValueError(f"The 'q' parameter of top_region must be a percentage in (0, 100]. Got {q!r} instead.")
    m = torch.as_tensor(maps).to(torch.float64)
    flat = m.flatten(1)
    k = max(1, math.ceil(float(q) / 100.0 * flat.shape[1]))
    kth = flat.topk(k, dim=1).values[:, -1:]  # [N, 1]
    return (flat >= kth).view_as(m)


def top_q_iou(a: Any, b: Any, q: float = 20.0) -> Tensor:
    """IoU of the top-q % regions of two sets of maps [N, H, W] -> [N]."""
    a, b = _check_pair(a, b, "top_q_iou")
    ra, rb = top_region(a, q), top_region(b, q)
    inter = (ra & rb).flatten(1).sum(1).double()
    union = (ra | rb).flatten(1).sum(1).double()
    return inter / union


def _check_masks(masks: Any, shape: torch.Size, where: str) -> Tensor:
    m = torch.as_tensor(masks)
    if m.shape != shape:
        raise ValueError(
            f"The 'masks' argument of {where} must have the maps' shape {tuple(shape)} (one mask per image). "
            f"Got {tuple(m.shape)} instead."
        )
    return m.bool()


def pointing_game(maps: Any, masks: Any) -> Tensor:
    """Whether each map's maximum (first in row-major order) falls inside its mask: [N] bool."""
    m = torch.as_tensor(maps).to(torch.float64)
    mk = _check_masks(masks, m.shape, "pointing_game")
    idx = m.flatten(1).argmax(1, keepdim=True)  # [N, 1]; first maximum
    return mk.flatten(1).gather(1, idx)[:, 0]


def energy_in_mask(maps: Any, masks: Any) -> Tensor:
    """Share of each non-negative map's sum that lies inside its mask: [N] (NaN where the map sums to 0)."""
    m = torch.as_tensor(maps).to(torch.float64)
    mk = _check_masks(masks, m.shape, "energy_in_mask")
    total = m.flatten(1).sum(1)
    inside = (m * mk).flatten(1).sum(1)
    return torch.where(
        total > 0, inside / torch.where(total > 0, total, torch.ones_like(total)), torch.full_like(total, math.nan)
    )


# --------------------------------------------------------------------------------------------
# Result and compute
# --------------------------------------------------------------------------------------------
@dataclass
class CamResult:
    """Grad-CAMs of a teacher and a student on the same images and classes, with their measures."""

    images: Tensor  # [N, C, H, W] the inputs (CPU)
    targets: Tensor  # [N] the class explained per image
    teacher: Tensor  # [N, H, W] raw Grad-CAM of the teacher (non-negative)
    student: Tensor  # [N, H, W] raw Grad-CAM of the student
    per_image: pd.DataFrame  # image, target, pearson, iou, and with masks pointing_/energy_ per role
    q: float = 20.0  # top-q % for the IoU
    masks: Tensor | None = field(default=None, repr=False)  # [N, H, W] ground truth of the explained class
    class_names: list[str] | None = None  # names of the classes, for titles

    def localisation(self) -> pd.DataFrame:
        """Per model (rows teacher, student): pointing-game hit rate, mean energy inside the mask, and the
        number of images each covers (NaN energies skipped). Empty without masks."""
        if self.masks is None:
            return pd.DataFrame(columns=["pointing_game", "energy_in_mask", "n_images", "n_energy"])
        rows = {}
        for role in ("teacher", "student"):
            e = self.per_image[f"energy_{role}"]
            rows[role] = {
                "pointing_game": float(self.per_image[f"pointing_{role}"].mean()),
                "energy_in_mask": float(e.mean()),
                "n_images": len(e),
                "n_energy": int(e.notna().sum()),
            }
        return pd.DataFrame.from_dict(rows, orient="index")

    def agreement(self) -> dict[str, float]:
        """Mean Pearson correlation and mean top-q % IoU over the images (NaN skipped), with counts."""
        p = self.per_image["pearson"]
        return {
            "pearson": float(p.mean()),
            "iou": float(self.per_image["iou"].mean()),
            "n_images": len(p),
            "n_pearson": int(p.notna().sum()),
        }


def _model_and_layer(obj: Any, layer: Any, role: str, where: str) -> tuple[nn.Module, Any]:
    """An adapter (``.model``, ``.cam_layer``) or a bare module with an explicit layer."""
    model = obj if isinstance(obj, nn.Module) else getattr(obj, "model", None)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"The '{role}' argument of {where} must be a ModelAdapter or a torch.nn.Module. "
            f"Got {type(obj).__name__} instead."
        )
    if layer is None:
        layer = getattr(obj, "cam_layer", None)
    if layer is None:
        raise ValueError(
            f"No Grad-CAM layer for the {role} in {where}: the model has no conv layer known to its "
            f"adapter. Pass {role}_layer= (the last conv layer's name)."
        )
    return model, layer


def compute(
    student: Any,
    teacher: Any,
    inputs: Any,
    targets: Any,
    *,
    masks: Any = None,
    q: float = 20.0,
    student_layer: Any = None,
    teacher_layer: Any = None,
    class_names: list[str] | None = None,
) -> CamResult:
    """Grad-CAM of teacher and student for ``targets`` on ``inputs``, their agreement and localisation.

    ``student`` / ``teacher``: ModelAdapters (their ``cam_layer`` is used) or ``nn.Module``s with
    ``*_layer`` given. ``inputs`` [N, C, H, W]; ``targets`` an int or [N] class indices.
    ``masks``: ground truth, [N, C, H, W] bool per class (the explained class's mask is taken) or
    [N, H, W] bool. ``q``: top-q % for the IoU.
    """
    where = "analyses.cams.compute"
    x = _check_images(inputs, where)
    tgt = _check_targets(targets, x.shape[0], where)
    if not 0 < float(q) <= 100:
        raise ValueError(f"The 'q' parameter of {where} must be a percentage in (0, 100]. Got {q!r} instead.")
    s_model, s_layer = _model_and_layer(student, student_layer, "student", where)
    t_model, t_layer = _model_and_layer(teacher, teacher_layer, "teacher", where)
    cam_t = grad_cam(t_model, t_layer, x, tgt)  # [N, H, W]
    cam_s = grad_cam(s_model, s_layer, x, tgt)
    n, h, w = cam_t.shape
    per_image = pd.DataFrame(
        {
            "image": np.arange(n),
            "target": tgt.numpy(),
            "pearson": pearson(cam_t, cam_s).numpy(),
            "iou": top_q_iou(cam_t, cam_s, q).numpy(),
        }
    )
    mk = None
    if masks is not None:
        mk = torch.as_tensor(masks).cpu()
        if mk.dim() == 4 and mk.shape[0] == n and mk.shape[-2:] == (h, w):
            if int(tgt.max()) >= mk.shape[1]:
                raise ValueError(
                    f"The 'masks' argument of {where} has {mk.shape[1]} class channels, but a target is "
                    f"{int(tgt.max())}."
                )
            mk = mk[torch.arange(n), tgt]  # [N, H, W]
        if mk.shape != (n, h, w):
            raise ValueError(
                f"The 'masks' argument of {where} must have shape [N, C, H, W] or [N, H, W] with N = {n}, "
                f"H, W = {h}, {w}. Got {tuple(torch.as_tensor(masks).shape)} instead."
            )
        mk = mk.bool()
        for role, cam in (("teacher", cam_t), ("student", cam_s)):
            per_image[f"pointing_{role}"] = pointing_game(cam, mk).numpy()
            per_image[f"energy_{role}"] = energy_in_mask(cam, mk).numpy()
    return CamResult(
        images=x.detach().cpu(),
        targets=tgt,
        teacher=cam_t,
        student=cam_s,
        per_image=per_image,
        q=float(q),
        masks=mk,
        class_names=class_names,
    )


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _class_name(result: CamResult, c: int) -> str:
    return result.class_names[c] if result.class_names and c < len(result.class_names) else f"class {c}"


def overlay_figure(result: CamResult, *, index: int = 0, opacity: float = 0.5) -> go.Figure:
    """Teacher (left) and student (right) Grad-CAM of one image, min-max normalised and overlaid on it;
    the ground-truth mask's outline where there is one."""
    n = result.teacher.shape[0]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(
            f"The 'index' parameter of overlay_figure must be an integer in [0, {n - 1}]. Got {index!r} instead."
        )
    row = result.per_image.iloc[index]
    maps = {
        "teacher": normalize_maps(result.teacher[index : index + 1])[0],
        "student": normalize_maps(result.student[index : index + 1])[0],
    }  # [H, W] each
    fig = make_subplots(rows=1, cols=2, subplot_titles=["teacher", "student"], horizontal_spacing=0.06)
    for c, role in enumerate(("teacher", "student"), start=1):
        fig.add_trace(_style.image_trace(result.images[index], name="image"), row=1, col=c)
        fig.add_trace(
            go.Heatmap(
                z=maps[role].numpy(),
                coloraxis="coloraxis",
                opacity=opacity,
                name=f"{role} Grad-CAM",
                hovertemplate="x %{x}, y %{y}<br>CAM %{z:.3f} (min-max)<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=c,
        )
        if result.masks is not None:
            fig.add_trace(
                go.Contour(
                    z=result.masks[index].double().numpy(),
                    contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "lines"},
                    line={"color": "white", "width": 2},
                    showscale=False,
                    name="ground-truth mask",
                    showlegend=(c == 1),
                    hoverinfo="skip",
                ),
                row=1,
                col=c,
            )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="x (pixels)")
    fig.update_yaxes(title_text="y (pixels)", col=1)
    fig.update_layout(
        coloraxis={
            "colorscale": "Jet",
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "Grad-CAM<br>(min-max)"}},
        }
    )
    title = (
        f"Grad-CAM for {_class_name(result, int(row['target']))}, image {index}: "
        f"Pearson {row['pearson']:.2f}, top-{result.q:g}% IoU {row['iou']:.2f}"
    )
    return _style.finish(fig, title=title, legend=False)  # the mask outline is named in the page's caption


def localisation_figure(result: CamResult) -> go.Figure:
    """Pointing-game hit rate and energy inside the mask, teacher and student side by side."""
    if result.masks is None:
        raise ValueError(
            "localisation_figure needs ground-truth masks: pass masks= to analyses.cams.compute "
            "(the shapes dataset has them)."
        )
    loc = result.localisation()
    metrics = ["pointing game (hit rate)", "energy inside the mask (share)"]
    fig = go.Figure()
    for role in ("teacher", "student"):
        vals = [loc.loc[role, "pointing_game"], loc.loc[role, "energy_in_mask"]]
        fig.add_trace(
            go.Bar(
                x=metrics,
                y=vals,
                name=role,
                marker_color=_style.ROLE_COLOURS[role],
                customdata=[[loc.loc[role, "n_images"]], [loc.loc[role, "n_energy"]]],
                hovertemplate="%{x}<br>%{y:.3f} over %{customdata[0]} images<extra>" + role + "</extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1])
    return _style.finish(
        fig, title=f"Grad-CAM localisation over {len(result.per_image)} images", x="measure", y="fraction (0–1)"
    )


def agreement_figure(result: CamResult) -> go.Figure:
    """Per image: Pearson correlation of the teacher and student maps against the IoU of their top-q % regions."""
    df = result.per_image
    names = [_class_name(result, int(c)) for c in df["target"]]
    fig = go.Figure(
        go.Scatter(
            x=df["pearson"],
            y=df["iou"],
            mode="markers",
            name="image",
            marker={"color": _style.STUDENT, "size": 8},
            customdata=np.stack([df["image"].to_numpy(), np.array(names, dtype=object)], axis=1),
            hovertemplate="image %{customdata[0]} (%{customdata[1]})<br>Pearson %{x:.3f}"
            "<br>IoU %{y:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[-1.05, 1.05])
    fig.update_yaxes(range=[-0.05, 1.05])
    return _style.finish(
        fig,
        title=f"Teacher–student Grad-CAM agreement per image (top-{result.q:g}% regions)",
        x="Pearson correlation of the maps (−1 to 1)",
        y=f"IoU of the top-{result.q:g}% regions (0–1)",
        legend=False,
    )


def figure(result: CamResult, **kwargs: Any) -> go.Figure:
    """The main figure of a result: :func:`overlay_figure` (keyword arguments pass through)."""
    if not isinstance(result, CamResult):
        raise ValueError(
            f"The 'result' argument of analyses.cams.figure must be a CamResult. Got {type(result).__name__} instead."
        )
    return overlay_figure(result, **kwargs)
