"""Layer-subset initialisation of in-memory modules (METHODS §14.2): init_from_teacher on a tiny
ResNet-style CNN (tests/helpers/cnn_pairs.py: stages of BasicBlocks, BatchNorm) and on a transformer-style ModuleList."""

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.adapters import init_from_teacher
from kdcore.validation import InvalidParameterError
from tests.helpers.cnn_pairs import TinyResNet
from tests.helpers.cnn_pairs import randomise as _randomise


def _spread_np(n_t, n_s):
    return [0] if n_s == 1 else [int(v) for v in np.rint(np.arange(n_s) * (n_t - 1) / (n_s - 1))]


def _expected_key(key, stacks):
    """The teacher key of a student key, from the container names and teacher lengths (plain regex)."""
    m = re.match(r"^(\w+)\.(\d+)\.(.*)$", key)
    if m and m.group(1) in stacks:
        n_t, n_s = stacks[m.group(1)]
        return f"{m.group(1)}.{_spread_np(n_t, n_s)[int(m.group(2))]}.{m.group(3)}"
    return key


@pytest.fixture
def cnn_pair():
    torch.manual_seed(0)
    return _randomise(TinyResNet((3, 4)), 1), _randomise(TinyResNet((2, 2)), 2)


def test_cnn_student_tensors_equal_the_mapped_teacher_tensors(cnn_pair):
    teacher, student = cnn_pair
    new, mapping = init_from_teacher(teacher, student)
    assert (
        mapping
        == {"layer1": [0, 2], "layer2": [0, 3]}
        == {
            "layer1": _spread_np(3, 2),
            "layer2": _spread_np(4, 2),
        }
    )
    t_state = {k: v.numpy().astype(np.float64) for k, v in teacher.state_dict().items()}
    new_state = new.state_dict()
    assert set(new_state) == set(student.state_dict())
    stacks = {"layer1": (3, 2), "layer2": (4, 2)}
    for key, value in new_state.items():
        np.testing.assert_array_equal(value.numpy().astype(np.float64), t_state[_expected_key(key, stacks)], key)
    assert "layer2.1.bn2.running_var" in new_state and "layer2.0.down.1.num_batches_tracked" in new_state
    assert all(v.data_ptr() != t.data_ptr() for v in new_state.values() for t in teacher.state_dict().values())


def test_cnn_student_output_equals_a_hand_built_reference(cnn_pair):
    teacher, student = cnn_pair
    new, _ = init_from_teacher(teacher, student)
    ref = copy.deepcopy(teacher)  # the same network with the kept blocks, assembled by hand
    ref.layer1 = nn.Sequential(teacher.layer1[0], teacher.layer1[2])
    ref.layer2 = nn.Sequential(teacher.layer2[0], teacher.layer2[3])
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(new.eval()(x), ref.eval()(x))
        assert not torch.allclose(new(x), student(x))


def test_inputs_are_not_mutated(cnn_pair):
    teacher, student = cnn_pair
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (teacher, student)]
    new, _ = init_from_teacher(teacher, student, rule="first")
    assert new is not student
    for model, saved in zip((teacher, student), before):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert len(student.layer2) == 2 and len(teacher.layer2) == 4


class TinyTransformer(nn.Module):
    """HF-style: embeddings, a ModuleList of layers, a final norm and a head."""

    def __init__(self, n_layers, width=6, vocab=11):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU()) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):  # [B, L] -> [B, L, vocab]
        h = self.embed(ids)
        for layer in self.layers:
            h = h + layer(h)
        return self.head(self.norm(h))


@pytest.mark.parametrize(("rule", "offset", "kept"), [("spread", 0, [0, 2, 5]), ("stride", 1, [1, 3, 5])])
def test_module_list_layers(rule, offset, kept):
    teacher, student = _randomise(TinyTransformer(6), 4), _randomise(TinyTransformer(3), 5)
    new, mapping = init_from_teacher(teacher, student, rule=rule, offset=offset)
    assert mapping == {"layers": kept}
    t_state = teacher.state_dict()
    for key, value in new.state_dict().items():
        m = re.match(r"^layers\.(\d+)\.(.*)$", key)
        t_key = f"layers.{kept[int(m.group(1))]}.{m.group(2)}" if m else key
        assert torch.equal(value, t_state[t_key]), key
    ref = copy.deepcopy(teacher)
    ref.layers = nn.ModuleList(teacher.layers[j] for j in kept)
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(new(ids), ref(ids))


def test_errors_name_what_was_expected_and_received(cnn_pair):
    teacher, student = cnn_pair
    with pytest.raises(
        InvalidParameterError,
        match=r"layer2.0.conv1.weight. has shape \(8, 4, 3, 3\) but .* has \(6, 4, 3, 3\).*not a shallower copy",
    ):
        init_from_teacher(TinyResNet((3, 4), widths=(4, 6)), student)
    with pytest.raises(InvalidParameterError, match="'layer2' has 5 blocks but the teacher's has only 4"):
        init_from_teacher(teacher, TinyResNet((2, 5)))
    with pytest.raises(InvalidParameterError, match="nothing to subset"):
        init_from_teacher(teacher, TinyResNet((3, 4)))
    extra = TinyResNet((2, 2))
    extra.proj = nn.Linear(8, 8)
    with pytest.raises(
        InvalidParameterError, match=r"without a teacher counterpart: proj.bias, proj.weight; .* lacks: none\."
    ):
        init_from_teacher(teacher, extra)
    headless = TinyResNet((2, 2))
    del headless.fc
    with pytest.raises(InvalidParameterError, match=r"counterpart: none; .* the student lacks: fc.bias, fc.weight\."):
        init_from_teacher(teacher, headless)
    with pytest.raises(
        InvalidParameterError, match=r"counterpart: layer2.0.down.0.weight \(as teacher layer2.1.down.0.weight\)"
    ):
        init_from_teacher(teacher, student, rule=[1, 2])  # student block 0 projects, teacher block 1 does not
    with pytest.raises(InvalidParameterError, match="must be a torch.nn.Module. Got dict"):
        init_from_teacher(teacher, {})
