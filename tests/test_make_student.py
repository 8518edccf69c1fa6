"""Layer-subset initialisation (METHODS §14.2): layer_subset_indices and make_student_from_teacher
on tiny Llama- and BERT-style directories built from configs (tests/helpers/hf_pairs.py)."""

import re
from fractions import Fraction

import pytest
import torch
from safetensors import safe_open

from kdcore.adapters import layer_subset_indices, load_hf, make_student_from_teacher
from kdcore.validation import InvalidParameterError
from tests.helpers.hf_pairs import bert_config, bert_pair, llama_pair, save_model


def _spread_by_hand(n_t, n_s):
    """rint with ties to even, from exact halves: floor(x + 1/2), stepping back to even on an exact tie."""
    if n_s == 1:
        return [0]
    out = []
    for i in range(n_s):
        x = Fraction(i * (n_t - 1), n_s - 1)
        lo = x.numerator // x.denominator
        frac = x - lo
        out.append(lo + (1 if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and lo % 2 == 1) else 0))
    return out


def test_spread_reproduces_distilbert_and_the_hand_made_table_entries_it_follows():
    assert layer_subset_indices(12, 6) == [0, 2, 4, 7, 9, 11]  # extract_distilbert.py
    assert layer_subset_indices(12, 3) == [0, 6, 11] and layer_subset_indices(12, 1) == [0]
    assert layer_subset_indices(16, 4) == [0, 5, 10, 15] and layer_subset_indices(6, 2) == [0, 5]


@pytest.mark.parametrize("n_t", [1, 2, 5, 12, 16, 30, 31])
def test_spread_equals_exact_rounding_and_strictly_increases(n_t):
    for n_s in range(1, n_t + 1):
        got = layer_subset_indices(n_t, n_s)
        assert got == _spread_by_hand(n_t, n_s)
        assert all(a < b for a, b in zip(got, got[1:])) and got[-1] == (n_t - 1 if n_s > 1 else 0)


def test_spread_rounds_exact_halves_to_even_where_floating_point_would_not():
    # 30 -> 15: i * 29 / 14 has exact halves at i = 7 (14.5 -> 14); floating point i * (29 / 14) is 14.500000000000002
    assert layer_subset_indices(30, 15)[7] == 14
    assert round(7 * (29 / 14)) == 15  # the pitfall the spec names


def test_stride_and_first_and_explicit():
    assert layer_subset_indices(12, 6, "stride") == [0, 2, 4, 6, 8, 10]
    assert layer_subset_indices(12, 6, "stride", offset=1) == [1, 3, 5, 7, 9, 11]
    assert layer_subset_indices(12, 4, "first") == [0, 1, 2, 3]
    assert layer_subset_indices(12, 3, [1, 5, 11]) == [1, 5, 11]


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        ((4, 6), {}, ["at most n_teacher=4", "deeper", "from_teacher"]),
        ((12, 5, "stride"), {}, ["divisible", "spread"]),
        ((12, 6, "stride"), {"offset": 2}, ["offset", "[0, 1]"]),
        ((12, 6), {"offset": 1}, ["applies to rule='stride' only"]),
        ((12, 6, "middle"), {}, ["'spread'", "'middle'"]),
        ((12, 3, [0, 5, 5]), {}, ["strictly increasing"]),
        ((12, 3, [0, 5, 12]), {}, ["[0, 11]"]),
        ((0, 1), {}, ["n_teacher"]),
    ],
)
def test_bad_arguments_are_refused_with_the_way_out(args, kwargs, words):
    with pytest.raises(InvalidParameterError) as err:
        layer_subset_indices(*args, **kwargs)
    for w in words:
        assert w in str(err.value)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_pairs")
    return {"llama": llama_pair(root), "bert": bert_pair(root)}


def test_llama_student_copies_the_chosen_teacher_layers_and_keeps_embeddings_tied(pairs, tmp_path):
    teacher_dir, _ = pairs["llama"]
    made = make_student_from_teacher(teacher_dir, 2, tmp_path / "s")
    assert made.layers == [0, 3] and made.teacher_layers == 4 and made.architecture == "LlamaForCausalLM"
    teacher, student = load_hf(teacher_dir).model, load_hf(made.path).model
    assert student.config.num_hidden_layers == 2 and student.config.hidden_size == teacher.config.hidden_size
    t_state = teacher.state_dict()
    for i, j in enumerate(made.layers):
        for name, value in student.model.layers[i].state_dict().items():
            assert torch.equal(value, t_state[f"model.layers.{j}.{name}"]), name
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(student.state_dict()[name], t_state[name])
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied
    with safe_open(str(made.path / "model.safetensors"), "pt") as f:  # saved once, not twice
        assert "model.embed_tokens.weight" in f.keys() and "lm_head.weight" not in f.keys()
    assert (made.path / "tokenizer.json").read_bytes() == (teacher_dir / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_a_student_with_all_layers_reproduces_the_teacher(pairs, tmp_path, kind):
    teacher_dir, _ = pairs[kind]
    made = make_student_from_teacher(teacher_dir, 4, tmp_path / "s")
    hf_kind = "causal_lm" if kind == "llama" else "sequence_classification"
    ids = torch.randint(3, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    t_logits = load_hf(teacher_dir, kind=hf_kind).model(ids).logits
    s_logits = load_hf(made.path, kind=hf_kind).model(ids).logits
    assert made.layers == [0, 1, 2, 3] and torch.equal(s_logits, t_logits)


def _teacher_key(key, prefix, layers):
    """The teacher's name of a student tensor: `prefix.i.` becomes `prefix.layers[i].`."""
    return re.sub(rf"^{re.escape(prefix)}\.(\d+)\.", lambda m: f"{prefix}.{layers[int(m.group(1))]}.", key)


def test_bert_student_copies_layers_embeddings_and_classifier(pairs, tmp_path):
    teacher_dir, _ = pairs["bert"]
    made = make_student_from_teacher(teacher_dir, 2, tmp_path / "s", rule="stride", offset=1)
    assert made.layers == [1, 3]
    t_state = load_hf(teacher_dir, kind="sequence_classification").model.state_dict()
    s_state = load_hf(made.path, kind="sequence_classification").model.state_dict()
    assert any(k.startswith("classifier.") for k in s_state) and any(k.startswith("bert.embeddings.") for k in s_state)
    for key, value in s_state.items():
        assert torch.equal(value, t_state[_teacher_key(key, "bert.encoder.layer", made.layers)]), key


def test_a_headless_bf16_encoder_keeps_its_class_and_dtype(tmp_path):
    from transformers import BertModel

    teacher_dir = save_model(bert_config(4, architectures=["BertModel"]), tmp_path / "t", seed=5)
    teacher = BertModel.from_pretrained(str(teacher_dir), local_files_only=True).to(torch.bfloat16)
    teacher.save_pretrained(str(teacher_dir))
    made = make_student_from_teacher(teacher_dir, 3, tmp_path / "s")
    student = BertModel.from_pretrained(str(made.path), local_files_only=True)
    assert made.architecture == "BertModel" and made.layers == [0, 2, 3] and student.dtype == torch.bfloat16
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        assert torch.equal(value, t_state[_teacher_key(key, "encoder.layer", made.layers)]), key


def test_make_student_refusals(pairs, tmp_path):
    teacher_dir, _ = pairs["llama"]
    with pytest.raises(InvalidParameterError, match="cannot be deeper than the teacher"):
        make_student_from_teacher(teacher_dir, 5, tmp_path / "deep")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidParameterError, match="new or empty directory"):
        make_student_from_teacher(teacher_dir, 2, tmp_path / "full")
    with pytest.raises(InvalidParameterError, match="no config.json"):
        make_student_from_teacher(tmp_path / "full", 2, tmp_path / "out")
    with pytest.raises(InvalidParameterError, match="does not exist"):
        make_student_from_teacher(tmp_path / "nowhere", 2, tmp_path / "out")
