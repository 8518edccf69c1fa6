"""Safe weight loading: safetensors or weights_only; pickles refused; mismatches named."""

import collections
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from kdcore.weights import apply_state_dict, load_state_dict, save_state_dict


def _net(width=6):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))


def test_safetensors_round_trip(tmp_path):
    net = _net()
    path = save_state_dict(net, tmp_path / "w.safetensors")
    state = load_state_dict(path)
    assert set(state) == set(net.state_dict())
    other = apply_state_dict(_net(), state)
    for k, v in net.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_plain_torch_files_load_with_weights_only(tmp_path, suffix):
    net = _net()
    torch.save(net.state_dict(), tmp_path / f"w{suffix}")
    state = load_state_dict(tmp_path / f"w{suffix}")
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_checkpoint_wrapping_a_state_dict_is_unwrapped(tmp_path):
    net = _net()
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    assert set(load_state_dict(tmp_path / "ckpt.pt")) == set(net.state_dict())


def test_pickle_needing_full_unpickling_is_refused_without_running_it(tmp_path, monkeypatch):
    (tmp_path / "evil_mod_for_test.py").write_text(
        textwrap.dedent("""
        import os
        RAN = []
        class Payload:
            def __reduce__(self):
                return (RAN.append, ("code ran",))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import evil_mod_for_test

    torch.save({"w": torch.zeros(2), "x": evil_mod_for_test.Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError) as info:
        load_state_dict(tmp_path / "evil.pt")
    msg = str(info.value)
    assert "Refused" in msg and "arbitrary code" in msg and "safetensors" in msg and "save_file" in msg
    assert evil_mod_for_test.RAN == [], "the pickle's code must never run"
    sys.modules.pop("evil_mod_for_test", None)


def test_whole_pickled_module_is_refused(tmp_path):
    torch.save(_net(), tmp_path / "model.pt")  # a full nn.Module pickle
    with pytest.raises(ValueError, match="needs full unpickling"):
        load_state_dict(tmp_path / "model.pt")


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_state_dict(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="not a file"):
        load_state_dict(tmp_path)
    with pytest.raises(ValueError, match="'path'"):
        load_state_dict(42)


@pytest.mark.parametrize(
    "name, data",
    [
        ("w.safetensors", b"garbage" * 20),
        ("w.pt", b"garbage" * 20),
    ],
)
def test_corrupt_files(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match="corrupt"):
        load_state_dict(tmp_path / name)


def test_truncated_files(tmp_path):
    net = _net()
    save_state_dict(net, tmp_path / "full.safetensors")
    torch.save(net.state_dict(), tmp_path / "full.pt")
    for name in ("full.safetensors", "full.pt"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / ("cut" + name[4:])
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="corrupt|truncated"):
            load_state_dict(cut)


def test_other_suffix_and_non_tensor_content(tmp_path):
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        load_state_dict(tmp_path / "w.onnx")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="state dict"):
        load_state_dict(tmp_path / "list.pt")
    torch.save({"w": torch.zeros(1), "note": "text"}, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="'note' holds str"):
        load_state_dict(tmp_path / "mixed.pt")


def test_shape_mismatch_names_key_and_both_shapes():
    state = _net(width=8).state_dict()
    with pytest.raises(ValueError) as info:
        apply_state_dict(_net(width=6), state)
    msg = str(info.value)
    assert "'0.weight'" in msg and "[6, 4]" in msg and "[8, 4]" in msg
    assert "3 shape mismatch" in msg  # 0.weight, 0.bias, 2.weight; 2.bias fits


def test_missing_and_unexpected_keys_are_named():
    state = _net().state_dict()
    state["extra.weight"] = state.pop("2.bias")
    with pytest.raises(ValueError) as info:
        apply_state_dict(_net(), state)
    msg = str(info.value)
    assert "missing" in msg and "'2.bias'" in msg and "'extra.weight'" in msg


def test_dataparallel_prefix_hint():
    state = {f"module.{k}": v for k, v in _net().state_dict().items()}
    with pytest.raises(ValueError, match="strip that prefix"):
        apply_state_dict(_net(), state)


def test_failed_apply_leaves_the_model_untouched():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    bad = {k: torch.ones_like(v) for k, v in net.state_dict().items()}
    bad.pop("2.bias")
    with pytest.raises(ValueError):
        apply_state_dict(net, bad)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_save_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_state_dict(_net(), tmp_path / "w.pt")


def test_ordered_dict_of_tensors_loads(tmp_path):
    od = collections.OrderedDict(a=torch.arange(3.0))
    save_file(dict(od), str(tmp_path / "a.safetensors"))
    torch.save(od, tmp_path / "a.pt")
    assert torch.equal(load_state_dict(tmp_path / "a.safetensors")["a"], load_state_dict(tmp_path / "a.pt")["a"])
