"""BERT-style encoder pairs: load_hf(kind="encoder") pooling, masks from padding, CKA and attention of two
encoders on sentences, and a short distillation job through the Python API."""

import numpy as np
import pytest
import torch

from analyses import attention as attention_view
from analyses import cka as cka_view
from kdcore.adapters import HFEncoderAdapter, load_hf, wrap
from kdcore.data import load_hf_sentences
from kdcore.jobs import JobConfig, run_job
from kdcore.methods import StepTensors, get_method
from kdcore.pairs import Pair
from tests.helpers.hf_pairs import PAD, bert_encoder_pair, bert_pair

SENTENCES = [f"Sentence {i} says {'more and more ' * (i % 4)}things." for i in range(24)]


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    t_dir, s_dir = bert_encoder_pair(root)
    ds = load_hf_sentences("\n".join(SENTENCES).encode(), t_dir, student_dir=s_dir, max_length=20)
    return {
        "t_dir": t_dir,
        "s_dir": s_dir,
        "teacher": load_hf(t_dir, kind="encoder"),
        "student": load_hf(s_dir, kind="encoder", pooling="mean"),
        "ds": ds,
        "root": root,
    }


def _batch(enc, n=6):
    part = enc["ds"].split("train")
    return part.inputs[:n], part.extras["attention_mask"][:n]


def _hidden(adapter, ids, mask):
    """The last hidden states [B, L, H] and attentions of the model called directly, with the mask."""
    with torch.no_grad():
        out = adapter.model(input_ids=ids, attention_mask=mask, output_attentions=True)
    return out.last_hidden_state.double().numpy(), [a.double().numpy() for a in out.attentions]


def test_pooling_matches_a_manual_computation(enc):
    ids, mask = _batch(enc)
    assert (mask == 0).any()  # some rows are padded
    h_t, _ = _hidden(enc["teacher"], ids, mask)
    h_s, _ = _hidden(enc["student"], ids, mask)
    m = mask.double().numpy()[..., None]
    np.testing.assert_allclose(enc["teacher"].logits(ids).double().numpy(), h_t[:, 0], rtol=1e-5, atol=1e-6)
    mean = (h_s * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(enc["student"].logits(ids).double().numpy(), mean, rtol=1e-5, atol=1e-6)
    explicit = enc["student"].logits({"input_ids": ids, "attention_mask": mask})  # a dict's mask is used as given
    torch.testing.assert_close(explicit, enc["student"].logits(ids))
    assert enc["teacher"].output_size == 32 and enc["student"].output_size == 24


def test_padding_does_not_change_a_sentences_embedding(enc):
    ids, mask = _batch(enc)
    row = int(mask.sum(1).argmin())
    n = int(mask[row].sum())
    alone = ids[row : row + 1, :n]  # the same sentence without padding
    for adapter in (enc["teacher"], enc["student"]):
        torch.testing.assert_close(adapter.logits(ids)[row : row + 1], adapter.logits(alone), rtol=1e-5, atol=1e-5)
        feats = adapter.capture(ids, ["encoder.layer.1"])["encoder.layer.1"]
        alone_feats = adapter.capture(alone, ["encoder.layer.1"])["encoder.layer.1"]
        torch.testing.assert_close(feats[row : row + 1, :n], alone_feats, rtol=1e-4, atol=1e-5)


def test_layers_features_and_the_pooled_layer(enc):
    ids, _ = _batch(enc, 3)
    t = enc["teacher"]
    assert t.default_layers() == ["embeddings"] + [f"encoder.layer.{i}" for i in range(4)]
    assert enc["student"].default_layers() == ["embeddings", "encoder.layer.0", "encoder.layer.1"]
    assert "pooled" in t.layer_names()
    feats = t.capture(ids, ["encoder.layer.3", "pooled"])
    assert feats["encoder.layer.3"].shape == (3, 20, 32) and feats["pooled"].shape == (3, 32)
    torch.testing.assert_close(feats["pooled"], feats["encoder.layer.3"][:, 0])  # cls pooling of the last layer


def test_pairs_of_different_widths_fit_encoder_data_only(enc, tmp_path):
    pair = Pair("enc", enc["teacher"], enc["student"], dataset=enc["ds"])
    assert pair.kind == "encoder" and pair.output_size == 32
    cls_t, _ = bert_pair(tmp_path)
    labelled = load_hf_sentences(
        "\n".join(f'{{"text": "{s}", "label": {i % 2}}}' for i, s in enumerate(SENTENCES)).encode(),
        cls_t,
        format="jsonl",
        label_field="label",
    )
    with pytest.raises(ValueError, match="classification task, but the models are encoders"):
        Pair("enc", enc["teacher"], enc["student"], dataset=labelled)


def _np_linear_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_of_two_encoders_per_token_and_pooled(enc):
    ids, mask = _batch(enc, 8)
    teacher, student = enc["teacher"], enc["student"]
    per_token = cka_view.pair_cka(
        teacher, student, ids, layers_a=["encoder.layer.3"], layers_b=["encoder.layer.1"], tokens="per_token", mask=mask
    )
    h_t, _ = _hidden(teacher, ids, mask)
    with torch.no_grad():
        h_s1 = student.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
    keep = mask.bool().numpy()
    want = _np_linear_cka(h_t[keep], h_s1.double().numpy()[keep])  # real tokens only
    assert per_token.iloc[0, 0] == pytest.approx(want, rel=1e-6)
    pooled = cka_view.pair_cka(teacher, student, ids, layers_a=["pooled"], layers_b=["pooled"])
    want_pooled = _np_linear_cka(teacher.logits(ids).double().numpy(), student.logits(ids).double().numpy())
    assert pooled.iloc[0, 0] == pytest.approx(want_pooled, rel=1e-6)
    mean = cka_view.pair_cka(teacher, student, ids, tokens="mean", mask=mask)
    assert mean.shape == (5, 3) and np.isfinite(mean.to_numpy()).all()


def test_attention_maps_mask_padding_and_carry_token_labels(enc):
    ids, mask = _batch(enc, 4)
    atts = enc["teacher"].attentions(ids)
    _, direct = _hidden(enc["teacher"], ids, mask)
    assert len(atts) == 4 and atts[0].shape == (4, 4, 20, 20)
    for a, d in zip(atts, direct):
        np.testing.assert_allclose(a.double().numpy(), d, rtol=1e-5, atol=1e-6)
        assert float(a.masked_select(~mask.bool()[:, None, None, :].expand_as(a)).abs().max()) < 1e-6  # pad keys
    labels = enc["ds"].tokenizer.tokens(ids[0])
    result = attention_view.compute_from_adapters(enc["student"], enc["teacher"], ids, mask=mask, tokens=labels)
    assert result.tokens == labels and len(result.student) == 2 and not result.matches.empty


def test_wrap_gives_an_encoder_adapter_for_an_in_memory_model(enc):
    adapter = wrap(enc["teacher"].model, name="in memory", kind="encoder")
    assert isinstance(adapter, HFEncoderAdapter) and adapter.pooling == "cls"
    ids, _ = _batch(enc, 2)
    torch.testing.assert_close(adapter.logits(ids), enc["teacher"].logits(ids))
    assert int((ids == PAD).sum()) > 0


def _job(**kw):
    base = dict(pair="enc", epochs=2, batch_size=8, lr=1e-3, checkpoints=1, seed=0)
    return JobConfig(**{**base, **kw})


def test_an_encoder_pair_distils_end_to_end(enc):
    pair = Pair("enc", enc["teacher"], enc["student"], dataset=enc["ds"])
    before = {k: v.clone() for k, v in enc["student"].model.state_dict().items()}
    result = run_job(_job(objective="embed_distill"), pair=pair, use_store=False)
    assert result.state == "completed", result.error
    m = result.metrics
    assert m["metric"] == "val_cka" and 0.0 <= m["final_val_cka"] <= 1.0 + 1e-9
    assert 0.0 <= m["final_val_loss"] <= 2.0  # 1 − cos of the projected student embedding and the teacher's
    assert "teacher_val_acc" not in m and m["steps"] == 6
    after = enc["student"].model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the pair's student is never trained


@pytest.mark.parametrize(
    "objective,params",
    [
        ("feature_l2", {"layers": {"encoder.layer.1": "encoder.layer.3"}}),
        ("attn_kl", {}),
        ("embed_distill", {"loss": "mse"}),
    ],
)
def test_feature_attention_and_mse_objectives_run_on_the_encoder_pair(enc, objective, params):
    pair = Pair("enc", enc["teacher"], enc["student"], dataset=enc["ds"])
    result = run_job(_job(objective=objective, params=params, epochs=1), pair=pair, use_store=False)
    assert result.state == "completed", result.error
    assert np.isfinite(result.metrics["final_train_loss"]) and result.metrics["final_val_cka"] > 0


def test_attn_kl_leaves_padded_query_rows_out(enc):
    ids, mask = _batch(enc, 4)
    s_att, t_att = enc["student"].attentions(ids), enc["teacher"].attentions(ids)
    emb = torch.zeros(4, 2)
    batch = StepTensors("encoder", emb, emb, emb, student_attn=s_att, teacher_attn=t_att, attention_mask=mask)
    [(name, _, value)] = get_method("attn_kl").step(batch, {"layers": None})
    s, t = s_att[-1].double().numpy(), t_att[-1].double().numpy()  # the last layers, [B, H, L, L], 4 heads each
    kept_t, kept_s = np.where(t > 0, t, 1.0), np.where(t > 0, s, 1.0)  # padded keys: t = s = 0, no term
    terms = np.where(t > 0, t * (np.log(kept_t) - np.log(kept_s)), 0.0).sum(-1)  # KL(t ‖ s) per row
    keep = mask.bool().numpy()[:, None, :].repeat(terms.shape[1], axis=1)  # [B, H, L] real query rows
    assert name == "attn_kl/1" and value.item() == pytest.approx(terms[keep].mean(), rel=1e-4)
    assert value.item() != pytest.approx(terms.mean(), rel=1e-4)  # padded rows would change it


def test_labels_and_misfits_are_refused_before_training(enc):
    pair = Pair("enc", enc["teacher"], enc["student"], dataset=enc["ds"])
    with pytest.raises(ValueError, match="'encoder' task has no labels: set ce_weight to 0"):
        run_job(_job(objective="embed_distill", ce_weight=1.0), pair=pair, use_store=False)
    with pytest.raises(ValueError, match="objective 'kd' is a classification loss.*embed_distill"):
        run_job(_job(objective="kd"), pair=pair, use_store=False)


def test_embed_distill_on_a_bert_classifier_pair_maps_the_pooler(enc):
    t_dir, s_dir = bert_pair(enc["root"] / "cls")
    rows = "\n".join(f'{{"text": "{s}", "label": {i % 2}}}' for i, s in enumerate(SENTENCES)).encode()
    ds = load_hf_sentences(rows, t_dir, student_dir=s_dir, format="jsonl", label_field="label", max_length=20)
    t, s = load_hf(t_dir, kind="sequence_classification"), load_hf(s_dir, kind="sequence_classification")
    pair = Pair("cls", t, s, dataset=ds)
    with pytest.raises(ValueError, match="needs the layers holding the sentence embedding"):
        run_job(_job(pair="cls", objective="embed_distill"), pair=pair, use_store=False)
    params = {"layers": {"bert.pooler": "bert.pooler"}}
    result = run_job(_job(pair="cls", objective="embed_distill", params=params, epochs=1), pair=pair, use_store=False)
    assert result.state == "completed", result.error
    assert result.metrics["metric"] == "val_acc" and 0.0 <= result.metrics["final_val_acc"] <= 1.0
