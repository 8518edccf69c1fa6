"""What the learned heads of MGD and FAM-KD do to a student feature (methods/14 §14.1, §14.4).

What the view shows
-------------------
- **MGD** (Yang et al. 2022, arXiv 2205.01529): for one input and one teacher channel, the aligned
  student feature after the random mask M ⊙ A(S), what the generator G makes of it, and the teacher
  feature T it must rebuild, side by side on one colour scale; the masked channels (or positions);
  and the weight of the MGD term against the label loss, α·L_MGD / CE (the §14.1 "Tiny" check: the
  rescaled α should give a ratio of order one in the first epoch, not 100 or 0.001).
- **FAM-KD** (Pham et al. 2024, arXiv 2403.05894): the amplitude spectra |FFT2| (mean over inputs
  and channels, log scale, DC in the centre) of the teacher feature, the student feature resized to
  the teacher's grid, the module's global-filter branch after the high-pass, and the module output;
  the removed low-frequency block is outlined and counted (4·r_h·r_w of H·W frequencies). The
  branch keeps only Re(IFFT2(Y)), whose spectrum is (Y(k) + conj Y(−k))/2; the removed block
  {−r..r−1} is not symmetric, so its row and column −r show the mirror of the kept frequency +r and
  only {−(r−1)..r−1} is dark (as in the authors' code).

What to look for
----------------
MGD: with λ = 0.15 a channel mask blanks about one channel in seven; an untrained generator gives
noise, a trained one rebuilds the teacher map even in masked channels. FAM: with the paper's c = 0.1
nothing is removed on maps under 20 pixels a side (the count is 0); c = 0.5 removes the central
quarter, and the filtered branch's spectrum is dark there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots
from torch import Tensor

from analyses import _style
from kdcore.losses.famkd import FAMModule
from kdcore.losses.mgd import MGDHead, mgd_alpha, mgd_loss, mgd_mask
from kdcore.validation import InvalidParameterError, check_finite_tensor

_M = TypeVar("_M", bound=torch.nn.Module)


@dataclass
class MGDView:
    """One input's maps [H, W] for one teacher channel, and the batch's loss terms."""

    masked: np.ndarray  # M ⊙ A(S) at (sample, channel)
    generated: np.ndarray  # G(M ⊙ A(S))
    teacher: np.ndarray  # T
    kept: np.ndarray  # channel mask: [C_t] 1 kept / 0 masked for the sample; spatial: [H, W]
    mask: str
    sample: int
    channel: int
    alpha: float  # the α used (after rescaling when asked)
    mgd: float  # α·L_MGD on the batch
    ce: float  # the student's CE on the batch
    ratio: float  # α·L_MGD / CE


@dataclass
class FAMView:
    """Amplitude spectra [H, W] (mean over inputs and channels, DC centred) and the high-pass."""

    freqs_h: np.ndarray  # [H] signed integer frequencies in display order
    freqs_w: np.ndarray  # [W]
    spectra: dict[str, np.ndarray]  # "teacher", "student (resized)", "filtered branch", "module output"
    keep: np.ndarray  # [H, W] bool, DC centred: False on the removed block
    removed: int
    total: int
    cuton: float


def _features(student_feat: Any, teacher_feat: Any, where: str) -> tuple[Tensor, Tensor]:
    """S and T [N, C, H, W], each checked (finite, four dimensions), as detached float32 CPU tensors."""
    s = check_finite_tensor("student_feat", student_feat, where=where, dims=4)
    t = check_finite_tensor("teacher_feat", teacher_feat, where=where, dims=4)
    return s.detach().float().cpu(), t.detach().float().cpu()


def _seeded(seed: int, build: Callable[[], _M]) -> _M:
    """build() with torch's CPU generator seeded by `seed`; the global generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _index(name: str, value: Any, n: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
        raise InvalidParameterError(
            f"The '{name}' parameter of {where} must be an integer in [0, {n - 1}]. Got {value!r}."
        )
    return int(value)


@torch.no_grad()
def mgd_view(
    student_feat: Tensor,
    teacher_feat: Tensor,
    student_logits: Tensor,
    targets: Tensor,
    head: MGDHead | None = None,
    *,
    alpha: float = 7e-5,
    scale_alpha: bool = True,
    lambda_mask: float = 0.15,
    mask: str = "channel",
    sample: int = 0,
    channel: int = 0,
    seed: int = 0,
) -> MGDView:
    """The MGD view of a batch (S [N, C_s, H, W], T [N, C_t, H, W], the student's logits and labels).

    `head`: a trained MGDHead, else a fresh one initialised from `seed`. The mask is drawn from a
    generator seeded with `seed`; the loss is kdcore's `mgd_loss` with that mask.
    """
    where = "mgd_view"
    s, t = _features(student_feat, teacher_feat, where)
    if head is None:
        head = _seeded(seed, lambda: MGDHead(int(s.shape[1]), int(t.shape[1])))
    head = head.cpu().eval()
    sample = _index("sample", sample, t.shape[0], where)
    channel = _index("channel", channel, t.shape[1], where)
    a = mgd_alpha(alpha, tuple(t.shape)) if scale_alpha else float(alpha)
    m = mgd_mask(tuple(t.shape), lambda_mask, mask, rng=torch.Generator().manual_seed(seed))  # type: ignore[arg-type]
    loss = float(mgd_loss(s, t, head.generator, head.align, alpha=a, mask=mask, mask_tensor=m))
    masked = head.align(s) * m  # [N, C_t, H, W]
    gen = head.generator(masked)
    ce = float(F.cross_entropy(student_logits.detach().float().cpu(), targets.detach().cpu()))
    kept = m[sample, :, 0, 0] if mask == "channel" else m[sample, 0]
    return MGDView(
        masked=masked[sample, channel].double().numpy(),
        generated=gen[sample, channel].double().numpy(),
        teacher=t[sample, channel].double().numpy(),
        kept=kept.numpy(),
        mask=mask,
        sample=sample,
        channel=channel,
        alpha=a,
        mgd=loss,
        ce=ce,
        ratio=loss / ce if ce > 0 else float("inf"),
    )


def mgd_view_from_adapters(
    student: Any,
    teacher: Any,
    inputs: Tensor,
    targets: Tensor,
    *,
    student_layer: str,
    teacher_layer: str,
    head_state: dict[str, Tensor] | None = None,
    **kw: Any,
) -> MGDView:
    """:func:`mgd_view` on features and logits of two ModelAdapters (capture / logits); `head_state`: a
    trained head's weights (:func:`head_state`), else a fresh head."""
    fs = student.capture(inputs, [student_layer])[student_layer]
    ft = teacher.capture(inputs, [teacher_layer])[teacher_layer]
    head = None
    if head_state is not None:
        head = MGDHead(int(fs.shape[1]), int(ft.shape[1]))
        head.load_state_dict(head_state)
    return mgd_view(fs, ft, student.logits(inputs), targets, head, **kw)


def head_state(store: Any, run_id: str, key: str) -> dict[str, Tensor] | None:
    """The weights of a run's trained head `key` ("mgd__conv2", "famkd__conv1": kdcore.methods'
    mgd_key / fam_key) from its resume state (the heads are dropped from the student's checkpoints);
    None when the run saved no resume state or has no such head."""
    from kdcore.jobs.resume_state import RESUME_FILE, read_resume

    if RESUME_FILE not in set(store.artifacts(run_id)["name"]):
        return None
    tensors, _ = read_resume(store.verify_artifact(run_id, RESUME_FILE))
    prefix = f"proj.{key}."
    out = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return out or None


def mgd_figure(view: MGDView) -> go.Figure:
    """The masked student feature, the generated feature and the teacher feature (one colour scale)."""
    kept = "kept" if (view.kept.ndim == 1 and view.kept[view.channel] == 1) or view.kept.ndim == 2 else "MASKED"
    titles = [f"masked student M ⊙ A(S) (channel {kept})", "generated G(M ⊙ A(S))", "teacher T"]
    wrapped = [f"masked student<br>M ⊙ A(S), channel {kept}", "generated<br>G(M ⊙ A(S))", "teacher T"]  # narrow panels
    fig = make_subplots(rows=1, cols=3, subplot_titles=wrapped, horizontal_spacing=0.1)
    for k, (name, z) in enumerate(zip(titles, (view.masked, view.generated, view.teacher)), start=1):
        fig.add_trace(
            go.Heatmap(
                z=z,
                coloraxis="coloraxis",
                name=name.split(" (")[0],
                hovertemplate="row %{y}, column %{x}<br>%{z:.4f}<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=k,
        )
        fig.update_xaxes(title_text="width (feature-map cells)", row=1, col=k)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="height (feature-map cells)", row=1, col=1)
    fig.update_layout(coloraxis={"colorscale": _style.DIVERGING, "cmid": 0.0, "colorbar": {"title": {"text": "value"}}})
    share = 1.0 - float(view.kept.mean())
    title = (
        f"MGD, input {view.sample}, teacher channel {view.channel}: {view.mask} mask ({share:.0%} masked); "
        f"α·L_MGD / CE = {view.mgd:.4g} / {view.ce:.4g} = {view.ratio:.3g} (α = {view.alpha:.3g})"
    )
    _style.finish(fig, title=title, legend=False)
    return fig.update_layout(margin={"t": 150})  # room for the two-line panel titles under the figure's title


def component_ratio(steps: pd.DataFrame, prefix: str = "mgd/", denominator: str = "ce") -> pd.DataFrame:
    """Per epoch, the mean over its steps of Σ(components starting with `prefix`) / `denominator`, from a
    run's step metrics (RunStore.metrics(run_id, "step")): columns epoch, term, ce, ratio."""
    cols = [c for c in steps.columns if str(c).startswith(prefix)]
    if not cols or denominator not in steps.columns:
        raise InvalidParameterError(
            f"component_ratio needs step metrics with '{prefix}*' and '{denominator}' columns (a run of that "
            f"objective with ce_weight > 0). Got columns {list(steps.columns)}."
        )
    d = pd.DataFrame({"epoch": steps["epoch"], "term": steps[cols].sum(axis=1), "ce": steps[denominator]}).dropna()
    d["ratio"] = d["term"] / d["ce"]
    return d.groupby("epoch", as_index=False)[["term", "ce", "ratio"]].mean()


def _spectrum(x: Tensor) -> np.ndarray:
    """mean over N and C of |FFT2| (ortho), DC centred: [N, C, H, W] -> [H, W]."""
    amp = torch.fft.fft2(x.double(), norm="ortho").abs().mean(dim=(0, 1)).numpy()
    return np.fft.fftshift(amp)


@torch.no_grad()
def fam_view(
    student_feat: Tensor, teacher_feat: Tensor, module: FAMModule | None = None, *, cuton: float = 0.1, seed: int = 0
) -> FAMView:
    """The FAM view of a batch (S [N, C_s, h, w], T [N, C_t, H, W]); `module`: a trained FAMModule, else
    a fresh one from `seed` with this cut-on."""
    where = "fam_view"
    s, t = _features(student_feat, teacher_feat, where)
    if module is None:
        c_s, (c_t, h, w) = int(s.shape[1]), t.shape[1:]
        module = _seeded(seed, lambda: FAMModule(c_s, int(c_t), int(h), int(w), cuton=cuton))
    module = module.cpu().eval()
    x = module.resize(s)
    spectra = {
        "teacher": _spectrum(t),
        "student (resized)": _spectrum(x),
        "filtered branch (high-passed)": _spectrum(module.filtered(x)),
        "module output": _spectrum(module(s)),
    }
    h, w = module.size
    return FAMView(
        freqs_h=np.fft.fftshift(np.rint(np.fft.fftfreq(h) * h)).astype(int),
        freqs_w=np.fft.fftshift(np.rint(np.fft.fftfreq(w) * w)).astype(int),
        spectra=spectra,
        keep=np.fft.fftshift(module.keep.numpy()),
        removed=module.removed,
        total=h * w,
        cuton=module.cuton,
    )


def fam_view_from_adapters(
    student: Any,
    teacher: Any,
    inputs: Tensor,
    *,
    student_layer: str,
    teacher_layer: str,
    head_state: dict[str, Tensor] | None = None,
    cuton: float = 0.1,
    **kw: Any,
) -> FAMView:
    """:func:`fam_view` on features captured by two ModelAdapters; `head_state`: a trained module's weights."""
    fs = student.capture(inputs, [student_layer])[student_layer]
    ft = teacher.capture(inputs, [teacher_layer])[teacher_layer]
    module = None
    if head_state is not None:
        module = FAMModule(int(fs.shape[1]), int(ft.shape[1]), int(ft.shape[2]), int(ft.shape[3]), cuton=cuton)
        module.load_state_dict(head_state)
    return fam_view(fs, ft, module, cuton=cuton, **kw)


def fam_figure(view: FAMView) -> go.Figure:
    """The four spectra (log10 amplitude, DC centred), the removed block outlined on each."""
    names = list(view.spectra)
    wrapped = [n.replace(" (", "<br>(") for n in names]  # narrow panels: the qualifier on a second line
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=wrapped, horizontal_spacing=0.09)
    for k, name in enumerate(names, start=1):
        fig.add_trace(
            go.Heatmap(
                z=np.log10(view.spectra[name] + 1e-12),
                x=view.freqs_w,
                y=view.freqs_h,
                coloraxis="coloraxis",
                name=name,
                hovertemplate="v %{x}, u %{y}<br>log10 |F| %{z:.3f}<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=k,
        )
        fig.update_xaxes(title_text="frequency v (width)", row=1, col=k)
        rows, cols = np.nonzero(~view.keep)
        if len(rows):  # outline the removed block
            y0, y1 = view.freqs_h[rows.min()] - 0.5, view.freqs_h[rows.max()] + 0.5
            x0, x1 = view.freqs_w[cols.min()] - 0.5, view.freqs_w[cols.max()] + 0.5
            fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line={"color": "red"}, row=1, col=k)
    fig.update_yaxes(title_text="frequency u (height)", row=1, col=1)
    fig.update_layout(coloraxis={"colorscale": _style.SEQUENTIAL, "colorbar": {"title": {"text": "log10 |F|"}}})
    title = (
        f"FAM-KD spectra (cut-on c = {view.cuton:g}): the high-pass removed {view.removed} of {view.total} frequencies"
    )
    _style.finish(fig, title=title, legend=False)
    return fig.update_layout(margin={"t": 150})  # room for the two-line panel titles under the figure's title
