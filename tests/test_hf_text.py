"""Tokenizer-true text data (kdcore.data.hf_text): text, JSONL and CSV tokenised by the model
directory's own tokenizer, checked against the tokenizer called directly."""

import json
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from kdcore.adapters import load_hf
from kdcore.data import IGNORE_INDEX, SPLITS, check_same_tokenizer, load_hf_text, load_hf_tokenizer
from kdcore.validation import InvalidParameterError
from sample_models.make_tokenizer import train_tokenizer
from tests.helpers.hf_pairs import BOS, EOS, MAX_POSITIONS, VOCAB, llama_pair

DOCS = [
    "The teacher speaks first.",
    "A student listens, then answers in its own words.",
    "Padding is never counted.",
    "Short.",
    "Byte-level tokens: café, naïve, 3.14 and ☃.",
    "The last document is a little longer than the others, so that truncation has work to do here.",
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return llama_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture(scope="module")
def hf_tok(pair):
    return AutoTokenizer.from_pretrained(str(pair[0]), local_files_only=True)


def _expected_ids(hf_tok, doc):
    ids = hf_tok(doc)["input_ids"]  # the tokenizer adds BOS; the loader closes each document with EOS
    return ids + [EOS]


def _all_rows(ds):
    rows = []
    for s in SPLITS:
        sp = ds.split(s)
        for x, y, m in zip(sp.inputs, sp.targets, sp.extras["attention_mask"]):
            rows.append((tuple(x[m.bool()].tolist()), tuple(y.tolist()), int(m.sum())))
    return rows


def test_truncate_rows_are_the_tokenizers_ids_with_next_token_targets(pair, hf_tok):
    L = 12
    data = "\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(DOCS)).encode()
    ds = load_hf_text(data, pair[0], format="jsonl", context_length=L, mode="truncate", seed=3)
    assert ds.task == "causal_lm" and ds.vocab_size == VOCAB
    expected = []
    for doc in DOCS:
        ids = _expected_ids(hf_tok, doc)[: L + 1]
        targets = list(ids[1:]) + [IGNORE_INDEX] * (L + 1 - len(ids))
        expected.append((tuple(ids[:-1]), tuple(targets), len(ids) - 1))
    assert sorted(_all_rows(ds)) == sorted(expected)
    assert sum(ds.load_report["target_tokens"].values()) == sum(
        min(len(_expected_ids(hf_tok, d)), L + 1) - 1 for d in DOCS
    )
    assert ds.load_report["truncated_documents"] == sum(len(_expected_ids(hf_tok, d)) > L + 1 for d in DOCS)


def test_padding_and_document_starts_are_never_targets(pair):
    ds = load_hf_text("\n\n".join(DOCS).encode(), pair[0], context_length=10, mode="pack")
    for s in SPLITS:
        sp = ds.split(s)
        mask = sp.extras["attention_mask"]
        assert sp.inputs.shape == sp.targets.shape == mask.shape and sp.inputs.shape[1] == 10
        assert (sp.targets[mask == 0] == IGNORE_INDEX).all()
        assert not (sp.targets == BOS).any()  # BOS starts every document: never predicted
        assert ds.load_report["padding_tokens"][s] == int((mask == 0).sum())


def test_pack_cuts_the_concatenated_documents_into_chunks_of_L_plus_1(pair, hf_tok):
    L = 8
    per_doc = [_expected_ids(hf_tok, d) for d in DOCS]
    stream = [t for ids in per_doc for t in ids]
    starts = {sum(len(ids) for ids in per_doc[:k]) for k in range(len(per_doc))}
    chunks = [(a, min(a + L + 1, len(stream))) for a in range(0, len(stream), L + 1)]
    chunks = [(a, b) for a, b in chunks if b - a >= 2]
    counted = sum(1 for a, b in chunks for k in range(a, b - 1) if k + 1 not in starts)
    ds = load_hf_text("\n\n".join(DOCS).encode(), pair[0], context_length=L, mode="pack")
    assert sorted(r[0] for r in _all_rows(ds)) == sorted(tuple(stream[a : b - 1]) for a, b in chunks)
    assert sum(ds.load_report["target_tokens"].values()) == counted
    assert sum(ds.load_report["rows"].values()) == len(chunks)


def test_csv_and_jsonl_give_the_same_rows(pair, tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("label,text\n" + "\n".join(f'{i},"{d}"' for i, d in enumerate(DOCS)), encoding="utf-8")
    jsonl_path = tmp_path / "d.jsonl"
    jsonl_path.write_text("\n".join(json.dumps({"text": d}) for d in DOCS), encoding="utf-8")
    a = load_hf_text(csv_path, pair[0], context_length=16, mode="truncate")
    b = load_hf_text(jsonl_path, pair[0], context_length=16, mode="truncate")
    for s in SPLITS:
        assert torch.equal(a.split(s).inputs, b.split(s).inputs) and torch.equal(a.split(s).targets, b.split(s).targets)


def test_the_models_take_the_rows_and_the_loss_counts_only_targets(pair):
    ds = load_hf_text("\n\n".join(DOCS).encode(), pair[0], student_dir=pair[1], context_length=16)
    sp = ds.split("train")
    model = load_hf(pair[0]).model
    with torch.no_grad():
        logits = model(input_ids=sp.inputs, attention_mask=sp.extras["attention_mask"]).logits  # [N, L, V]
    assert logits.shape[-1] == ds.vocab_size
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), sp.targets.flatten(), reduction="sum")
    keep = sp.targets != IGNORE_INDEX
    by_hand = -logits.log_softmax(-1)[keep].gather(-1, sp.targets[keep][:, None]).sum()
    assert torch.allclose(loss, by_hand, rtol=1e-5)


def test_tokenizer_surface_round_trips(pair):
    tok = load_hf_text("\n\n".join(DOCS).encode(), pair[0], context_length=16).tokenizer
    text = "naïve café ☃ 42"
    assert tok.decode(tok.encode(text)) == text and BOS not in tok.encode(text)
    assert "".join(tok.tokens(tok.encode("a b"))).replace("␣", " ") == "a b"


def _copy_model(src, dst, tokenizer=True):
    shutil.copytree(src, dst)
    if not tokenizer:
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (dst / f).unlink()
    return dst


def test_a_model_directory_without_a_tokenizer_is_refused(pair, tmp_path):
    bare = _copy_model(pair[0], tmp_path / "bare", tokenizer=False)
    with pytest.raises(InvalidParameterError, match="has no tokenizer.*tokenizer.save_pretrained"):
        load_hf_text(b"some text", bare)
    with pytest.raises(InvalidParameterError, match="has no tokenizer"):
        load_hf_tokenizer(bare)


def test_tokenizers_that_differ_are_refused_naming_uld(pair, tmp_path):
    other = _copy_model(pair[1], tmp_path / "other_vocab")
    (other / "tokenizer.json").write_text(train_tokenizer(vocab_size=400).to_str(), encoding="utf-8")
    with pytest.raises(InvalidParameterError, match="vocabularies of 512 and 400 tokens.*'uld'"):
        load_hf_text(b"text\n\nmore\n\nand more", pair[0], student_dir=other)
    eos = _copy_model(pair[1], tmp_path / "other_eos")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((eos / name).read_text())
        (eos / name).write_text(json.dumps({**config, "eos_token": "<mask>"}))
    with pytest.raises(InvalidParameterError, match="eos_token '</s>'.*'<mask>'.*'uld'"):
        check_same_tokenizer(pair[0], eos)
    check_same_tokenizer(pair[0], pair[1])  # the same shipped tokenizer: accepted


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"context_length": MAX_POSITIONS + 1}, f"at most the model's max_position_embeddings, {MAX_POSITIONS}"),
        ({"mode": "slide"}, "'pack', 'truncate'"),
        ({"format": "xml"}, "'jsonl', 'csv'"),
        ({"format": "jsonl"}, "Line 1 of the JSONL.*not valid JSON"),
        ({"format": "csv", "text_field": "body"}, "'body' column"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(pair, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        load_hf_text(b"text,more\nsome,words\n", pair[0], **{"context_length": 16, **kwargs})


def test_jsonl_without_the_text_field_is_refused(pair):
    with pytest.raises(InvalidParameterError, match="string 'text' field.*text_field"):
        load_hf_text(b'{"body": "hello"}\n', pair[0], format="jsonl", context_length=16)
