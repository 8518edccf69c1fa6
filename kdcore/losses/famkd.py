"""Frequency attention for knowledge distillation, FAM-KD (methods/14-feature-and-weight.md §14.4).

Pham, Nguyen, Le, Phung, Carneiro, Do, "Frequency Attention for Knowledge Distillation", WACV 2024,
arXiv 2403.05894; code github.com/cuong-pv/FAM-KD (`distillers/FAM_KD.py`: FAM_Module, feat_loss).
The layer-to-layer model: a student map x (resized nearest to the teacher's H×W) goes through

    Y_o(u,v) = Σ_i FFT2(x_i)(u,v)·K_{i,o}(u,v)        (norm "ortho"; K complex, C_s×C_t×H×W)
    Y_o(u,v) = 0 for u ∈ {−r_h..r_h−1} mod H, v ∈ {−r_w..r_w−1} mod W   r = ⌊c·⌊n/2⌋⌋  (high-pass)
    FAM(x)   = γ₁·Re(IFFT2(Y)) + γ₂·(W₀x + b₀)
    L_FAM    = w·min(e/E_w, 1)·Σ_l mean( ReLU(BN(FAM_l(x_l))) − F_t,l )²
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdcore.losses._kl import _upcast
from kdcore.validation import InvalidParameterError, check_finite_tensor, check_nonnegative, check_range


def highpass_radius(n: int, cuton: float) -> int:
    """r = ⌊c·⌊n/2⌋⌋: half the side of the removed low-frequency block along an axis of n points."""
    c = check_range("cuton", cuton, 0.0, 1.0, where="highpass_radius")
    return int(c * (int(n) // 2))


def highpass_keep(h: int, w: int, cuton: float) -> Tensor:
    """[H, W] bool, False on the removed block {−r_h..r_h−1} × {−r_w..r_w−1} (mod H, W; DC included)."""
    rh, rw = highpass_radius(h, cuton), highpass_radius(w, cuton)
    fu = torch.fft.fftfreq(h, d=1.0 / h).round().long()  # integer frequency of each index: 0, 1, .., −1
    fv = torch.fft.fftfreq(w, d=1.0 / w).round().long()
    low_u = (fu >= -rh) & (fu <= rh - 1)  # [H]
    low_v = (fv >= -rw) & (fv <= rw - 1)  # [W]
    return ~(low_u[:, None] & low_v[None, :])


class FAMModule(nn.Module):
    """The frequency attention module of one layer pair (§14.4): a learned complex global filter K per
    frequency (C_s×C_t), the high-pass, a 1×1 local branch W₀, the scalars γ₁, γ₂ (0.5 at init), and
    the BN the loss applies after it. forward(x [N, C_s, h, w]) -> FAM(x) [N, C_t, H, W]."""

    keep: Tensor  # [H, W] bool buffer: False on the removed low-frequency block

    def __init__(self, student_channels: int, teacher_channels: int, height: int, width: int, *, cuton: float = 0.1):
        super().__init__()
        for name, v in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"The '{name}' parameter of FAMModule must be an integer >= 1. Got {v!r}.")
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"The '{name}' parameter of FAMModule must be an integer >= 1. Got {v!r}.")
        self.cuton = check_range("cuton", cuton, 0.0, 1.0, where="FAMModule", hint="The paper's code uses 0.1.")
        cs, ct = student_channels, teacher_channels
        scale = 1.0 / (cs * ct)
        self.k_real = nn.Parameter(scale * torch.rand(cs, ct, height, width))  # Re K ~ U[0,1)/(C_s·C_t)
        self.k_imag = nn.Parameter(scale * torch.rand(cs, ct, height, width))  # Im K
        self.local = nn.Conv2d(cs, ct, 1)  # W₀ x + b₀ (PyTorch default init)
        self.gamma1 = nn.Parameter(torch.tensor(0.5))
        self.gamma2 = nn.Parameter(torch.tensor(0.5))
        self.bn = nn.BatchNorm2d(ct)
        self.register_buffer("keep", highpass_keep(height, width, self.cuton), persistent=False)  # [H, W]
        self.student_channels, self.teacher_channels, self.size = cs, ct, (height, width)

    @property
    def removed(self) -> int:
        """How many of the H·W frequencies the high-pass sets to zero (4·r_h·r_w)."""
        return int((~self.keep).sum())

    def resize(self, x: Tensor) -> Tensor:
        """The student map resized (nearest) to the module's H×W, as the authors' code does."""
        return x if tuple(x.shape[-2:]) == self.size else F.interpolate(x, size=self.size, mode="nearest")

    def filtered(self, x: Tensor) -> Tensor:
        """Re(IFFT2(Y)) of a resized map [N, C_s, H, W] -> [N, C_t, H, W] (the global branch)."""
        xf = torch.fft.fft2(x.float(), norm="ortho")  # [N, C_s, H, W] complex
        k = torch.complex(self.k_real.float(), self.k_imag.float())  # [C_s, C_t, H, W]
        y = torch.einsum("nihw,iohw->nohw", xf, k) * self.keep  # [N, C_t, H, W], high-passed
        return torch.fft.ifft2(y, norm="ortho").real

    def forward(self, x: Tensor) -> Tensor:
        x = self.resize(x)
        return self.gamma1 * self.filtered(x) + self.gamma2 * self.local(x)  # [N, C_t, H, W]


def fam_warmup(epoch: int | None, warmup_epochs: int) -> float:
    """min(e/E_w, 1), e counted from 1; 1 when epoch is None or E_w = 0."""
    if epoch is None or warmup_epochs == 0:
        return 1.0
    return min(float(epoch) / float(warmup_epochs), 1.0)


def fam_kd_loss(
    student_feats: Sequence[Tensor],
    teacher_feats: Sequence[Tensor],
    fam_modules: Sequence[FAMModule],
    *,
    weight: float = 1.0,
    epoch: int | None = None,
    warmup_epochs: int = 20,
) -> Tensor:
    """L_FAM = w·min(e/E_w, 1)·Σ_l mean_{n,c,h,w}(ReLU(BN_l(FAM_l(x_l))) − F_t,l)² (§14.4).

    Lists of student maps [N, C_s, h, w], teacher maps [N, C_t, H, W] and the FAMModule of each pair.
    epoch=None: no ramp. The BN runs in the module's mode (training mode while the student trains).
    """
    where = "fam_kd_loss"
    w = check_nonnegative("weight", weight, where=where)
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise InvalidParameterError(f"The 'warmup_epochs' of {where} must be an integer >= 0. Got {warmup_epochs!r}.")
    lists = (list(student_feats), list(teacher_feats), list(fam_modules))
    if len({len(v) for v in lists}) != 1 or not lists[0]:
        raise InvalidParameterError(
            f"student_feats, teacher_feats and fam_modules of {where} must be non-empty lists of one length. "
            f"Got lengths {[len(v) for v in lists]}."
        )
    total = sum(_fam_layer(s, t, m, i) for i, (s, t, m) in enumerate(zip(*lists)))
    return w * fam_warmup(epoch, warmup_epochs) * total  # type: ignore[return-value]


def _fam_layer(s: Tensor, t: Tensor, m: FAMModule, i: int) -> Tensor:
    where = f"fam_kd_loss (layer pair {i})"
    s = check_finite_tensor("student_feats", s, where=where, dims=4)
    t = check_finite_tensor("teacher_feats", t, where=where, dims=4)
    if not isinstance(m, FAMModule):
        raise InvalidParameterError(f"fam_modules of {where} must hold FAMModule. Got {type(m).__name__}.")
    if s.shape[0] != t.shape[0]:
        raise InvalidParameterError(f"The batch sizes of {where} differ: student {s.shape[0]}, teacher {t.shape[0]}.")
    want = (m.student_channels, m.teacher_channels, *m.size)
    got = (s.shape[1], t.shape[1], *t.shape[2:])
    if want != got:
        raise InvalidParameterError(
            f"The FAMModule of {where} was built for (C_s, C_t, H, W) = {want} but the features give {got}: "
            f"build FAMModule(C_s, C_t, H, W) from these features."
        )
    out, tt = _upcast(torch.relu(m.bn(m(s))), t)
    return (out - tt).pow(2).mean()
