"""Embedding distillation (kdcore.losses.embedding_distill_loss) against plain numpy float64."""

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.losses import embedding_distill_loss, make_projector
from kdcore.validation import InvalidParameterError


def np_cosine(s, t):
    cos = (s * t).sum(1) / np.maximum(np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1), 1e-8)
    return float(np.mean(1.0 - cos))


def np_mse(s, t):
    return float(np.mean((s - t) ** 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind,ref", [("cosine", np_cosine), ("mse", np_mse)])
def test_equal_widths_match_numpy(seed, kind, ref):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g) * 3 + 1
    got = embedding_distill_loss(s, t, loss=kind)
    assert got.item() == pytest.approx(ref(s.double().numpy(), t.double().numpy()), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("kind,ref", [("cosine", np_cosine), ("mse", np_mse)])
def test_a_projector_maps_the_student_to_the_teachers_width(kind, ref):
    torch.manual_seed(3)
    s, t = torch.randn(5, 6), torch.randn(5, 9)
    proj = make_projector(s.shape, t.shape)
    assert isinstance(proj, nn.Linear) and proj.weight.shape == (9, 6)
    got = embedding_distill_loss(s, t, loss=kind, projector=proj)
    projected = s.double().numpy() @ proj.weight.detach().double().numpy().T  # g(e_s) = W e_s, no bias
    assert got.item() == pytest.approx(ref(projected, t.double().numpy()), rel=1e-5, abs=1e-7)
    got.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


def test_cosine_ignores_scale_and_a_zero_vector_counts_as_cosine_zero():
    torch.manual_seed(4)
    t = torch.randn(4, 8)
    assert embedding_distill_loss(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-6)
    s = t.clone()
    s[0] = 0.0
    assert embedding_distill_loss(s, t).item() == pytest.approx(1.0 / 4, abs=1e-6)  # one row: 1 − 0
    assert embedding_distill_loss(-t, t).item() == pytest.approx(2.0, abs=1e-6)


def test_bad_input_names_the_problem():
    s, t = torch.randn(4, 6), torch.randn(4, 8)
    with pytest.raises(InvalidParameterError, match="same width.*make_projector"):
        embedding_distill_loss(s, t)
    with pytest.raises(InvalidParameterError, match="'loss' parameter.*'cosine', 'mse'"):
        embedding_distill_loss(s, s, loss="l1")
    with pytest.raises(InvalidParameterError, match="'student_embeddings'"):
        embedding_distill_loss(torch.randn(4, 3, 6), torch.randn(4, 3, 6))
    with pytest.raises(InvalidParameterError, match="'projector'"):
        embedding_distill_loss(s, t, projector="linear")
