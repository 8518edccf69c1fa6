"""capture_features: values, detach semantics, hooks always removed, unknown names, threads."""

import threading

import pytest
import torch
from torch import nn

from kdcore.hooks import capture_features, count_capture_hooks, strip_capture_hooks


def _net():
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 3))


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_features_equal_a_manual_forward_and_are_detached_copies():
    net, x = _net(), torch.randn(5, 4)
    with capture_features(net, ["0", "2"]) as feats:
        out = net(x)
    pre = net[0](x)
    torch.testing.assert_close(feats["0"], pre)  # captured before the in-place ReLU changed it
    assert (feats["0"] < 0).any(), "the in-place ReLU that follows must not reach the captured copy"
    torch.testing.assert_close(feats["2"], out)
    assert all(not f.requires_grad and f.device.type == "cpu" for f in feats.values())
    assert list(feats) == ["0", "2"]


def test_detach_false_keeps_the_graph():
    net, x = _net(), torch.randn(5, 4)
    with capture_features(net, ["2"], detach=False) as feats:
        out = net(x)
    assert feats["2"] is out and feats["2"].requires_grad
    feats["2"].sum().backward()
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()


def test_hooks_removed_after_exception():
    net = _net()
    with pytest.raises(RuntimeError, match="inside"):
        with capture_features(net, ["0", "2"]):
            assert count_capture_hooks(net) == 2
            raise RuntimeError("inside")
    assert count_capture_hooks(net) == 0 and _hooks(net) == 0


def test_hooks_removed_when_forward_raises():
    net = _net()
    with pytest.raises(RuntimeError):
        with capture_features(net, ["0"]):
            net(torch.randn(2, 5))  # wrong width
    assert _hooks(net) == 0


def test_unknown_layer_lists_close_matches():
    net = nn.Sequential()
    net.add_module("encoder", nn.Linear(2, 2))
    net.add_module("decoder", nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"'encoderr'.*Closest names: \['encoder'") as info:
        with capture_features(net, ["encoderr"]):
            pass
    assert "'layers'" in str(info.value)
    with pytest.raises(ValueError, match=r"Wrap a single name in a list"):
        with capture_features(net, "encoder"):
            pass
    with pytest.raises(ValueError, match="not a layer"):
        with capture_features(net, [""]):  # the root is the logits, not a layer
            pass
    assert _hooks(net) == 0


def test_tuple_and_dict_outputs_take_the_first_tensor():
    class Pair(nn.Module):
        def forward(self, x):
            return (None, x * 2, x * 3)

    class Out(nn.Module):
        def forward(self, x):
            return {"aux": x + 1, "last_hidden_state": x - 1}

    x = torch.randn(2, 3)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.out = Pair(), Out()

        def forward(self, x):
            return self.pair(x)[1] + self.out(x)["aux"]

    w = Wrapper()
    with capture_features(w, ["pair", "out"]) as feats:
        w(x)
    torch.testing.assert_close(feats["pair"], x * 2)
    torch.testing.assert_close(feats["out"], x - 1)


def test_other_threads_forward_passes_are_not_captured():
    net, mine, theirs = _net(), torch.randn(2, 4), torch.randn(7, 4)
    with capture_features(net, ["2"]) as feats:
        t = threading.Thread(target=lambda: net(theirs))
        t.start()
        t.join()
        assert feats == {}, "another session's forward pass leaked into this capture"
        net(mine)
    assert feats["2"].shape == (2, 3)


def test_strip_capture_hooks_removes_only_ours():
    import copy

    net = _net()
    kept = net[0].register_forward_hook(lambda m, i, o: None)
    with capture_features(net, ["0", "2"]):
        twin = copy.deepcopy(net)
    assert count_capture_hooks(twin) == 2
    strip_capture_hooks(twin)
    assert count_capture_hooks(twin) == 0 and _hooks(twin) == 1
    kept.remove()
