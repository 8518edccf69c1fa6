"""Sentences for encoder and sequence-classifier pairs (kdcore.data.hf_sentences): tokenised by the model
directory's own tokenizer, padded with masks, labels checked against the model's num_labels."""

import json
import shutil

import pytest
import torch
from transformers import AutoTokenizer

from kdcore.data import SPLITS, load_hf_sentences
from kdcore.validation import InvalidParameterError
from tests.helpers.hf_pairs import MAX_POSITIONS, PAD, bert_config, bert_encoder_pair, bert_pair, save_model

SENTENCES = [
    "The teacher speaks first.",
    "A student listens.",
    "Padding is never counted, and this sentence is long enough to be cut at twelve tokens.",
    "Short.",
    "Café, naïve and ☃.",
    "Encoders read both ways.",
    "Six sentences make three splits.",
    "One more for the road.",
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sent")
    enc_t, enc_s = bert_encoder_pair(root)
    cls_t, cls_s = bert_pair(root)
    three = save_model(
        bert_config(2, num_labels=3, architectures=["BertForSequenceClassification"]), root / "b3", seed=7
    )
    return {"enc": enc_t, "enc_s": enc_s, "cls": cls_t, "cls_s": cls_s, "three": three}


def test_sentences_are_the_tokenizers_ids_padded_with_masks(dirs):
    ds = load_hf_sentences("\n".join(SENTENCES).encode(), dirs["enc"], student_dir=dirs["enc_s"], max_length=12)
    assert ds.task == "encoder" and ds.num_classes is None
    tok = AutoTokenizer.from_pretrained(str(dirs["enc"]), local_files_only=True)
    want = {tuple(tok(s)["input_ids"][:12]) for s in SENTENCES}
    got = set()
    for split in SPLITS:
        part = ds.split(split)
        mask = part.extras["attention_mask"]
        assert part.inputs.shape[1] == 12 and mask.shape == part.inputs.shape and part.targets.shape == (len(part),)
        assert torch.equal(part.inputs[mask == 0], torch.full_like(part.inputs[mask == 0], PAD))  # padding is PAD
        assert (mask[:, :-1] >= mask[:, 1:]).all()  # real tokens first, then padding
        got |= {tuple(row[m == 1].tolist()) for row, m in zip(part.inputs, mask)}
    assert got == want
    report = ds.load_report
    assert report["sentences"] == len(SENTENCES) and sum(report["rows"].values()) == len(SENTENCES)
    assert report["truncated_sentences"] == sum(len(tok(s)["input_ids"]) > 12 for s in SENTENCES) >= 1
    assert report["padding_tokens"] == sum(12 - min(12, len(tok(s)["input_ids"])) for s in SENTENCES)


def test_paragraph_unit_and_formats_give_the_same_sentences(dirs, tmp_path):
    lines = load_hf_sentences("\n".join(SENTENCES).encode(), dirs["enc"], max_length=16)
    paras = load_hf_sentences("\n\n".join(SENTENCES).encode(), dirs["enc"], max_length=16, unit="paragraph")
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("\n".join(json.dumps({"sentence": s}) for s in SENTENCES))
    from_jsonl = load_hf_sentences(jsonl, dirs["enc"], text_field="sentence", max_length=16)
    for other in (paras, from_jsonl):
        for split in SPLITS:
            assert torch.equal(lines.split(split).inputs, other.split(split).inputs)


def test_labels_make_a_classification_dataset_with_the_models_classes(dirs, tmp_path):
    csv = tmp_path / "s.csv"
    rows = [f'"{s}",{i % 2}' for i, s in enumerate(SENTENCES)]
    csv.write_text("text,label\n" + "\n".join(rows))
    ds = load_hf_sentences(csv, dirs["cls"], label_field="label", max_length=16)
    assert ds.task == "classification" and ds.num_classes == 2 and ds.size == 2
    names = [{"text": s, "y": ["neg", "pos", "mid"][i % 3]} for i, s in enumerate(SENTENCES)]
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in names))
    three = load_hf_sentences(jsonl, dirs["three"], label_field="y", max_length=16, seed=3)
    assert three.num_classes == 3 and three.class_names == ["mid", "neg", "pos"]  # sorted names -> ids 0, 1, 2
    tok = AutoTokenizer.from_pretrained(str(dirs["three"]), local_files_only=True)
    ids_of = {tuple(tok(r["text"])["input_ids"][:16]): ["mid", "neg", "pos"].index(r["y"]) for r in names}
    for split in SPLITS:
        part = three.split(split)
        for row, m, y in zip(part.inputs, part.extras["attention_mask"], part.targets):
            assert ids_of[tuple(row[m == 1].tolist())] == int(y)


def _copy(src, dst, **config_changes):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(config_changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_bad_input_is_refused_before_anything_runs(dirs, tmp_path):
    text = "\n".join(SENTENCES).encode()
    with pytest.raises(InvalidParameterError, match="'body' field"):
        load_hf_sentences(b'{"text": "a b"}\n{"text": "c d"}\n', dirs["enc"], format="jsonl", text_field="body")
    with pytest.raises(InvalidParameterError, match="must have a 'label' column"):
        load_hf_sentences(b"text\nhello\nworld\n", dirs["cls"], format="csv", label_field="label")
    with pytest.raises(InvalidParameterError, match="has no labels.*label_field"):
        load_hf_sentences(text, dirs["cls"], label_field="label")
    with pytest.raises(InvalidParameterError, match="max_position_embeddings, 64"):
        load_hf_sentences(text, dirs["enc"], max_length=MAX_POSITIONS + 1)
    with pytest.raises(InvalidParameterError, match="'unit'"):
        load_hf_sentences(text, dirs["enc"], unit="word")
    pad = _copy(dirs["enc"], tmp_path / "pad5", pad_token_id=5)
    with pytest.raises(InvalidParameterError, match="pads with id 0 but config.json's pad_token_id is 5"):
        load_hf_sentences(text, pad)


def test_labels_that_do_not_fit_the_models_num_labels_are_refused(dirs):
    rows = "\n".join(json.dumps({"text": s, "label": i % 3}) for i, s in enumerate(SENTENCES)).encode()
    with pytest.raises(InvalidParameterError, match=r"num_labels=2.*3 classes vs 2 outputs"):
        load_hf_sentences(rows, dirs["cls"], format="jsonl", label_field="label")
    names = "\n".join(json.dumps({"text": s, "label": "abcd"[i % 4]}) for i, s in enumerate(SENTENCES)).encode()
    with pytest.raises(InvalidParameterError, match=r"4 class names \(a, b, c, d\).*num_labels=3"):
        load_hf_sentences(names, dirs["three"], format="jsonl", label_field="label")
    bad = b'{"text": "a", "label": 1.5}\n'
    with pytest.raises(InvalidParameterError, match="'label' label"):
        load_hf_sentences(bad, dirs["cls"], format="jsonl", label_field="label")
