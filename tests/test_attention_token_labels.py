"""Attention maps and CKA on a real (tiny) Hugging Face Llama pair reading text tokenised by its own tokenizer:
positions labelled with the decoded tokens, padding cut off, CKA token options on the HF features."""

import numpy as np
import pytest
import torch

from analyses import attention, cka
from kdcore.adapters import load_hf
from kdcore.data import load_hf_text
from tests.helpers.figdata import arr
from tests.helpers.hf_pairs import BOS, llama_pair

DOCS = [
    "the cat sat on the mat",
    "a dog ran far away from home and never came back again",
    "hello world",
    "knowledge distillation moves what a large model knows into a small one",
    "tokens and more tokens",
    "one two three four five six seven eight nine ten",
]
L = 12
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("att_labels")
    teacher_dir, student_dir = llama_pair(root)
    text = root / "docs.txt"
    text.write_text("\n\n".join(DOCS))
    ds = load_hf_text(text, teacher_dir, student_dir=student_dir, context_length=L, mode="truncate", seed=0)
    split = ds.split("train")
    return {
        "teacher": load_hf(teacher_dir),
        "student": load_hf(student_dir),
        "ds": ds,
        "ids": split.inputs,
        "mask": split.extras["attention_mask"],
    }


def _decoded(hf_tok, ids):
    """The expected label of each id: the tokenizer's own decoding of that one token, whitespace made visible."""
    out = []
    for i in ids:
        text = hf_tok.decode([int(i)])
        out.append("".join(VISIBLE.get(c, c) for c in text))
    return out


def test_attention_axes_are_the_decoded_tokens_and_padding_is_cut(hf):
    ids, mask = hf["ids"], hf["mask"]
    assert bool((mask == 0).any()), "the test needs a padded row"
    res = attention.compute_from_adapters(
        hf["student"], hf["teacher"], ids, tokenizer=hf["ds"].tokenizer, attention_mask=mask
    )
    hf_tok = hf["ds"].tokenizer.hf
    for i in range(ids.shape[0]):
        assert res.input_tokens[i] == _decoded(hf_tok, ids[i].tolist())
    assert res.tokens == res.input_tokens[0]
    padded = int(torch.nonzero((mask == 0).any(1))[0])  # a row with padding
    k = int(mask[padded].sum())
    assert res.positions(padded) == list(range(k))
    assert int(ids[padded, 0]) == BOS and res.input_tokens[padded][0] == hf_tok.decode([BOS])
    fig = attention.maps_figure(res, sample=padded, student_layer=0).to_dict()
    heat = [d for d in fig["data"] if d["type"] == "heatmap"]
    assert list(arr(heat[0]["x"])) == list(range(k))
    np.testing.assert_allclose(arr(heat[0]["z"]), res.teacher[res.layer_map[0][1]][padded, 0, :k, :k].numpy())
    decoded = _decoded(hf_tok, ids[padded, :k].tolist())
    assert "ticktext" not in fig["layout"]["xaxis"]  # side-by-side panels: key positions stay numbers
    for axis in ("yaxis",):  # query positions: every k-th one labelled with its token
        vals = list(fig["layout"][axis]["tickvals"])
        step = vals[1] - vals[0] if len(vals) > 1 else 1
        assert vals == list(range(0, k, step)) and len(vals) <= max(2, 40 // 10)
        assert list(fig["layout"][axis]["ticktext"]) == [decoded[v] for v in vals]
    # the real tokens' attention is the model's attention on the unpadded text alone
    alone = hf["teacher"].attentions(ids[padded : padded + 1, :k])
    j = res.layer_map[0][1]
    np.testing.assert_allclose(res.teacher[j][padded, :, :k, :k].numpy(), alone[j][0].numpy(), atol=1e-5)
    avg = attention.head_average_figure(res, sample=padded).to_dict()
    assert list(avg["layout"]["xaxis"]["ticktext"]) == _decoded(hf_tok, ids[padded, :k].tolist())


def test_token_labels_fall_back_to_decode_and_refuse_floats():
    class DecodeOnly:
        def decode(self, ids):
            return f"<{ids[0]}>"

    assert attention.token_labels(DecodeOnly(), torch.tensor([[3, 4], [5, 3]])) == [["<3>", "<4>"], ["<5>", "<3>"]]
    with pytest.raises(ValueError, match="integer token ids"):
        attention.token_labels(DecodeOnly(), torch.randn(2, 3))
    with pytest.raises(ValueError, match="input_tokens"):
        attention.compute(
            [torch.full((1, 1, 2, 2), 0.5)], [torch.full((1, 1, 2, 2), 0.5)], input_tokens=[["a", "b", "c"]]
        )


def test_cka_options_on_the_hf_pair_match_numpy(hf):
    ids, mask = hf["ids"], hf["mask"]
    special = hf["ds"].tokenizer.special_ids
    assert BOS in special
    t, s = hf["teacher"], hf["student"]
    lt, ls = t.default_layers()[:2], s.default_layers()[:2]
    res = cka.pair_cka(
        t, s, ids, layers_a=lt, layers_b=ls, tokens="mean", mask=mask, drop_first=True, special_ids=special
    )
    inputs = {"input_ids": ids, "attention_mask": mask}
    keep = (mask.numpy() == 1) & ~np.isin(ids.numpy(), special)
    keep[:, 0] = False

    def rows(f):  # mean of each text's kept tokens, by explicit loops
        f = f.double().numpy()
        return np.array([f[i][keep[i]].mean(0) for i in range(f.shape[0])])

    fa, fb = t.capture(inputs, lt), s.capture(inputs, ls)
    for i, a in enumerate(lt):
        for j, b in enumerate(ls):
            x, y = rows(fa[a]), rows(fb[b])
            x, y = x - x.mean(0), y - y.mean(0)
            ref = np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
            assert res.iloc[i, j] == pytest.approx(ref, rel=1e-8)
