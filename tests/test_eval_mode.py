"""kdcore.adapters.eval_mode, the one eval scope (runner, adapters, analyses.cams): every submodule's
training flag, every parameter's requires_grad and the autograd mode come back exactly, also when
the block raises; a model already in eval mode is never written to."""

import pytest
import torch
from torch import nn

from kdcore.adapters import eval_mode


class _CountingDropout(nn.Dropout):
    """A dropout that counts how often its mode is set."""

    def __init__(self):
        super().__init__(0.5)
        self.mode_sets = 0

    def train(self, mode: bool = True):
        self.mode_sets += 1
        return super().train(mode)


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), _CountingDropout(), nn.Sequential(nn.Linear(8, 3), nn.ReLU()))
    m.train()
    m[1].eval()  # mixed flags: a frozen BatchNorm inside a training model
    m[3][1].training = False  # and a child whose flag differs from its parent's
    m[0].weight.requires_grad_(False)  # a frozen parameter
    return m


def _state(m):
    return ([mod.training for mod in m.modules()], [p.requires_grad for p in m.parameters()])


def test_flags_are_eval_inside_and_restored_after():
    m = _model()
    before = _state(m)
    with eval_mode(m) as inner:
        assert inner is m and not any(mod.training for mod in m.modules())
        assert torch.is_grad_enabled()
    assert _state(m) == before


@pytest.mark.parametrize("no_grad", [False, True])
def test_everything_is_restored_after_an_injected_error(no_grad):
    m = _model()
    before = _state(m)
    with pytest.raises(RuntimeError, match="injected"):
        with eval_mode(m, no_grad=no_grad):
            assert torch.is_grad_enabled() is not no_grad
            m[3].train()  # the block changes modes ...
            for p in m.parameters():
                p.requires_grad_(not p.requires_grad)  # ... and requires_grad (as attribution tools may)
            torch.set_grad_enabled(False)  # ... and the grad mode
            raise RuntimeError("injected")
    assert _state(m) == before
    assert torch.is_grad_enabled()


def test_no_grad_builds_no_graph_and_restores_the_outer_mode():
    m = _model()
    x = torch.randn(5, 4)
    with eval_mode(m, no_grad=True):
        assert not m(x).requires_grad
    assert m(x).requires_grad
    with torch.no_grad():
        with eval_mode(m):
            assert not torch.is_grad_enabled()
        assert not torch.is_grad_enabled()  # an outer no_grad is kept, not switched on


def test_a_model_already_in_eval_mode_is_not_written_to():
    m = _model().eval()
    drop = m[2]
    drop.mode_sets = 0
    with eval_mode(m):
        pass
    assert drop.mode_sets == 0 and not any(mod.training for mod in m.modules())


def test_eval_mode_really_disables_dropout_and_batch_statistics():
    m = _model()
    m[1].train()
    x = torch.randn(16, 4)
    with eval_mode(m, no_grad=True):
        a, b = m(x), m(x)
        single = m(x[:1])
    assert torch.equal(a, b) and torch.allclose(single, a[:1], atol=1e-6)


def test_analyses_cams_uses_this_scope():
    import analyses.cams as cams

    assert cams.eval_mode is eval_mode and not hasattr(cams, "scoped_eval")
