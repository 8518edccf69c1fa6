"""analyses.cams: Grad-CAM through Captum, left-as-found models, agreement/localisation measures, figures."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from analyses import cams
from tests.helpers.figdata import arr


class _Net(nn.Module):
    def __init__(self, width=6, classes=4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.drop(self.features(x).mean((2, 3))))


class _Adapter:
    def __init__(self, model, cam_layer):
        self.model, self.cam_layer = model, cam_layer


def _hooks(model):
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def _manual_grad_cam(model, layer, x, targets):
    """Grad-CAM by hand (Selvaraju et al.): alpha = spatial mean of dy_c/dA, ReLU(sum_k alpha_k A_k)."""
    store = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        model.eval()
        y = model(x)
        a = store["a"]  # [N, K, h, w]
        grads = torch.autograd.grad(y[torch.arange(len(x)), targets].sum(), a)[0]
    finally:
        handle.remove()
    cam = F.relu((grads.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def test_grad_cam_equals_direct_captum_call_and_manual_formula():
    model = _Net()
    x = torch.randn(5, 3, 12, 12)
    targets = torch.tensor([0, 3, 1, 1, 2])
    got = cams.grad_cam(model, "features.4", x, targets)
    ref_model = _Net()
    ref_model.load_state_dict(model.state_dict())
    ref_model.eval()
    ref = LayerGradCam(ref_model, ref_model.features[4]).attribute(x, target=targets.tolist(), relu_attributions=True)
    ref = LayerAttribution.interpolate(ref, (12, 12), interpolate_mode="bilinear")[:, 0].detach()
    assert got.shape == (5, 12, 12)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(
        got, _manual_grad_cam(ref_model, ref_model.features[4], x, targets), rtol=1e-5, atol=1e-6
    )
    assert (got >= 0).all() and got.flatten(1).amax(1).gt(0).any()


def test_grad_cam_leaves_the_model_as_it_was():
    model = _Net()
    model.train()
    model.head.weight.requires_grad_(False)  # a partly frozen model
    flags = [p.requires_grad for p in model.parameters()]
    bn = model.features[1]
    running = bn.running_mean.clone()
    x = torch.randn(3, 3, 8, 8)
    x_before = x.clone()
    cams.grad_cam(model, model.features[4], x, 1)
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert _hooks(model) == 0
    torch.testing.assert_close(bn.running_mean, running)  # ran in eval mode
    assert not x.requires_grad and torch.equal(x, x_before)
    # an error inside Captum (class index out of range) still restores everything
    model.features[0].eval()
    with pytest.raises(Exception):
        cams.grad_cam(model, model.features[4], x, 9)
    assert [m.training for m in model.modules()] == [True, True, False] + [True] * (len(list(model.modules())) - 3)
    assert [p.requires_grad for p in model.parameters()] == flags and _hooks(model) == 0


def test_grad_cam_rejects_bad_arguments():
    model = _Net()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="names no submodule.*features.0"):
        cams.grad_cam(model, "features.9", x, 0)
    with pytest.raises(ValueError, match="not part of the model"):
        cams.grad_cam(model, nn.Conv2d(3, 3, 1), x, 0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        cams.grad_cam(model, "features.4", torch.randn(3, 8, 8), 0)
    with pytest.raises(ValueError, match="'targets'"):
        cams.grad_cam(model, "features.4", x, torch.tensor([0.5, 1.0]))


# ---------------------------------------------------------------------------- measures vs numpy
def _np_pearson(a, b):
    out = []
    for u, v in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        u, v = u - u.mean(), v - v.mean()
        den = np.sqrt((u**2).sum() * (v**2).sum())
        out.append(np.nan if den == 0 else (u * v).sum() / den)
    return np.array(out)


def _np_top(m, q):
    flat = m.reshape(-1)
    k = max(1, math.ceil(q / 100 * flat.size))
    return (flat >= np.sort(flat)[::-1][k - 1]).reshape(m.shape)


def _np_iou(a, b, q):
    out = []
    for u, v in zip(a, b):
        ru, rv = _np_top(u, q), _np_top(v, q)
        out.append((ru & rv).sum() / (ru | rv).sum())
    return np.array(out)


@pytest.mark.parametrize("shape", [(3, 4, 5), (6, 10, 10), (1, 7, 3)])
@pytest.mark.parametrize("q", [20.0, 5.0, 50.0])
def test_pearson_and_iou_match_numpy(shape, q):
    a = np.random.rand(*shape)
    b = 0.6 * a + 0.4 * np.random.rand(*shape)
    np.testing.assert_allclose(
        cams.pearson(torch.from_numpy(a), torch.from_numpy(b)).numpy(), _np_pearson(a, b), rtol=1e-12
    )
    np.testing.assert_allclose(cams.top_q_iou(a, b, q).numpy(), _np_iou(a, b, q), rtol=1e-12)


def test_constructed_agreement_cases():
    a = np.zeros((1, 10, 10))
    a[0, :2, :] = 1.0  # top 20 % = first two rows
    b = np.zeros((1, 10, 10))
    b[0, 1:3, :] = 1.0  # overlaps one row of two
    assert cams.top_q_iou(a, b).item() == pytest.approx(10 / 30)
    assert cams.top_q_iou(a, a).item() == 1.0
    assert cams.top_q_iou(a, 1.0 - a).item() == 0.0
    assert cams.pearson(a, 3 * a + 1).item() == pytest.approx(1.0)
    assert cams.pearson(a, -a).item() == pytest.approx(-1.0)
    assert math.isnan(cams.pearson(a, np.zeros_like(a)).item())  # a constant map has no correlation


def test_pointing_game_and_energy_constructed():
    maps = np.zeros((3, 4, 4))
    maps[0, 1, 2] = 5.0
    maps[0, 3, 3] = 1.0  # max inside, 5/6 energy inside
    maps[1, 0, 0] = 2.0
    maps[1, 1, 1] = 2.0  # tie: first max (0,0) is outside
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[:, 1:3, 1:3] = True
    hit = cams.pointing_game(maps, masks).numpy()
    energy = cams.energy_in_mask(maps, masks).numpy()
    assert hit.tolist() == [True, False, False]  # map 2 is flat: first pixel, outside
    assert energy[0] == pytest.approx(5 / 6) and energy[1] == pytest.approx(0.5) and math.isnan(energy[2])


@pytest.mark.parametrize("shape", [(4, 6, 6), (2, 9, 5)])
def test_pointing_game_and_energy_match_numpy(shape):
    maps = np.random.rand(*shape)
    masks = np.random.rand(*shape) > 0.6
    exp_hit = [mk.reshape(-1)[np.argmax(m.reshape(-1))] for m, mk in zip(maps, masks)]
    exp_energy = [(m * mk).sum() / m.sum() for m, mk in zip(maps, masks)]
    assert cams.pointing_game(maps, masks).numpy().tolist() == exp_hit
    np.testing.assert_allclose(cams.energy_in_mask(maps, masks).numpy(), exp_energy, rtol=1e-12)


def test_normalize_maps():
    m = torch.stack([torch.arange(6.0).view(2, 3) + 2, torch.full((2, 3), 3.0)])
    out = cams.normalize_maps(m)
    torch.testing.assert_close(out[0], (torch.arange(6.0).view(2, 3) / 5).double())
    assert torch.equal(out[1], torch.zeros(2, 3, dtype=torch.float64))


# ---------------------------------------------------------------------------- compute + aggregation
def test_compute_with_masks_aggregates_like_pandas():
    teacher, student = _Net(width=8), _Net(width=4)
    x = torch.randn(6, 3, 10, 10)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    masks = torch.rand(6, 4, 10, 10) > 0.5  # [N, C, H, W] per class
    r = cams.compute(_Adapter(student, "features.4"), _Adapter(teacher, teacher.features[4]), x, y, masks=masks, q=25)
    cam_t = cams.grad_cam(teacher, "features.4", x, y).numpy()
    cam_s = cams.grad_cam(student, "features.4", x, y).numpy()
    np.testing.assert_allclose(r.teacher.numpy(), cam_t)
    mk = masks[torch.arange(6), y].numpy()  # the explained class's mask
    exp = pd.DataFrame(
        {
            "pearson": _np_pearson(cam_t, cam_s),
            "iou": _np_iou(cam_t, cam_s, 25),
            "pointing_teacher": [k.reshape(-1)[np.argmax(m.reshape(-1))] for m, k in zip(cam_t, mk)],
            "pointing_student": [k.reshape(-1)[np.argmax(m.reshape(-1))] for m, k in zip(cam_s, mk)],
            "energy_teacher": [(m * k).sum() / m.sum() if m.sum() > 0 else np.nan for m, k in zip(cam_t, mk)],
            "energy_student": [(m * k).sum() / m.sum() if m.sum() > 0 else np.nan for m, k in zip(cam_s, mk)],
        }
    )
    for col in exp:
        np.testing.assert_allclose(
            r.per_image[col].to_numpy(dtype=float), exp[col].to_numpy(dtype=float), rtol=1e-5, atol=1e-7
        )
    loc = r.localisation()
    for role in ("teacher", "student"):
        assert loc.loc[role, "pointing_game"] == pytest.approx(np.mean(exp[f"pointing_{role}"]))
        assert loc.loc[role, "energy_in_mask"] == pytest.approx(np.nanmean(exp[f"energy_{role}"]), rel=1e-5)
        assert loc.loc[role, "n_images"] == 6
    agree = r.agreement()
    assert agree["pearson"] == pytest.approx(np.nanmean(exp["pearson"]), rel=1e-5)
    assert agree["iou"] == pytest.approx(np.mean(exp["iou"]), rel=1e-5)


def test_compute_requires_a_layer_and_valid_masks():
    m = _Net()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="student_layer="):
        cams.compute(_Adapter(m, None), m, x, 0, teacher_layer="features.4")
    with pytest.raises(ValueError, match="'masks'"):
        cams.compute(m, m, x, 0, student_layer="features.4", teacher_layer="features.4", masks=torch.ones(2, 8, 7))
    with pytest.raises(ValueError, match="'q'"):
        cams.compute(m, m, x, 0, student_layer="features.4", teacher_layer="features.4", q=0)


# ---------------------------------------------------------------------------- figures
def _result(masks=True):
    t, s = _Net(width=8), _Net(width=4)
    x = torch.rand(3, 3, 8, 8)
    mk = torch.zeros(3, 4, 8, 8, dtype=torch.bool)
    mk[:, :, 2:6, 2:6] = True
    return cams.compute(
        s,
        t,
        x,
        torch.tensor([0, 1, 2]),
        masks=mk if masks else None,
        student_layer="features.4",
        teacher_layer="features.4",
        class_names=["a", "b", "c", "d"],
    )


def test_overlay_figure():
    r = _result()
    fig = cams.overlay_figure(r, index=1).to_dict()
    assert [d["type"] for d in fig["data"]] == ["image", "heatmap", "contour"] * 2
    heat = [d for d in fig["data"] if d["type"] == "heatmap"]
    np.testing.assert_allclose(arr(heat[0]["z"]), cams.normalize_maps(r.teacher[1:2])[0].numpy())
    np.testing.assert_allclose(arr(heat[1]["z"]), cams.normalize_maps(r.student[1:2])[0].numpy())
    assert arr(fig["data"][0]["z"]).shape == (8, 8, 3)
    lay = fig["layout"]
    assert "Grad-CAM for b" in lay["title"]["text"] and "IoU" in lay["title"]["text"]
    assert lay["xaxis"]["title"]["text"] == "x (pixels)" and lay["yaxis"]["title"]["text"] == "y (pixels)"
    assert "min-max" in heat[0]["hovertemplate"]
    nomask = cams.overlay_figure(_result(masks=False), index=0).to_dict()
    assert [d["type"] for d in nomask["data"]] == ["image", "heatmap"] * 2


def test_localisation_and_agreement_figures():
    r = _result()
    fig = cams.localisation_figure(r).to_dict()
    assert [(d["type"], d["name"]) for d in fig["data"]] == [("bar", "teacher"), ("bar", "student")]
    loc = r.localisation()
    np.testing.assert_allclose(
        arr(fig["data"][1]["y"]), [loc.loc["student", "pointing_game"], loc.loc["student", "energy_in_mask"]]
    )
    assert fig["layout"]["yaxis"]["title"]["text"] == "fraction (0–1)"
    fig = cams.agreement_figure(r).to_dict()
    assert fig["data"][0]["type"] == "scatter"
    np.testing.assert_allclose(arr(fig["data"][0]["x"]), r.per_image["pearson"].to_numpy())
    assert "Pearson" in fig["layout"]["xaxis"]["title"]["text"] and "IoU" in fig["layout"]["yaxis"]["title"]["text"]
    with pytest.raises(ValueError, match="masks"):
        cams.localisation_figure(_result(masks=False))


def test_figure_dispatches_on_the_result():
    r = _result(masks=False)
    assert cams.figure(r, index=2).to_dict() == cams.overlay_figure(r, index=2).to_dict()
    with pytest.raises(ValueError, match="CamResult"):
        cams.figure(None)


def test_compute_with_real_model_adapters_uses_their_cam_layer():
    from kdcore.adapters import wrap

    teacher, student = _Net(width=8), _Net(width=4)
    teacher.train()  # a shared model in train mode stays so
    t_ad = wrap(teacher, name="teacher", cam_layer="features.4")
    s_ad = wrap(student, name="student", cam_layer="features.0")
    x, y = torch.rand(3, 3, 8, 8), torch.tensor([1, 0, 2])
    r = cams.compute(s_ad, t_ad, x, y)
    torch.testing.assert_close(r.teacher, cams.grad_cam(teacher, "features.4", x, y))
    torch.testing.assert_close(r.student, cams.grad_cam(student, "features.0", x, y))
    assert teacher.training and all(m.training for m in teacher.modules())
    assert _hooks(teacher) == 0 and _hooks(student) == 0
