"""kdcore.data.sources (one dispatch over data formats) and kdcore.jobs.own_source (a user's own pair as one
value): each format reads as its own loader reads it, the pair a source loads is the pair the job built from
its fields trains on, and bad values are refused by name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kdcore.adapters.hf_files import check_kind, num_layers
from kdcore.data import get_dataset, load_hf_sentences, load_hf_text, load_table, load_text
from kdcore.data.sources import FORMATS, DataSource, load_data_source
from kdcore.jobs.config import JobConfig
from kdcore.jobs.own_source import OwnPairSource
from kdcore.jobs.pair_source import pair_for_config
from kdcore.validation import InvalidParameterError
from tests.helpers.factory_pairs import STUDENT, TEACHER, make_student, write_factory_pair
from tests.helpers.hf_pairs import bert_encoder_pair, llama_pair, llama_pair_with_corpus

TEXT = " ".join(f"The cat number {i % 7} sat on mat {i % 3}." for i in range(80))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own_source")
    out = write_factory_pair(root)
    out["text"] = root / "story.txt"
    out["text"].write_text(TEXT, encoding="utf-8")
    return out


def _same(a, b) -> bool:
    """Two datasets with the same splits (inputs and targets, every split)."""
    return all(
        torch.equal(a.split(s).inputs, b.split(s).inputs) and torch.equal(a.split(s).targets, b.split(s).targets)
        for s in ("train", "val", "test")
    )


def test_each_plain_format_reads_as_its_loader(files):
    assert load_data_source(DataSource("builtin", "digits")) is get_dataset("digits")
    table = load_data_source(DataSource("table", str(files["table"])))  # class column "label" by default
    assert _same(table, load_table(files["table"], label_column="label"))
    for tokenizer in ("char", "word"):
        text = load_data_source(DataSource("text", str(files["text"]), tokenizer=tokenizer))
        assert _same(text, load_text(files["text"], tokenizer=tokenizer)), tokenizer
    assert load_data_source(DataSource("text", str(files["text"]), tokenizer="word")).vocab_size < 40


def test_max_bytes_reaches_the_loader(files):
    size = files["table"].stat().st_size
    with pytest.raises(ValueError, match="MB"):
        load_data_source(DataSource("table", str(files["table"]), max_bytes=size // 2))
    assert len(load_data_source(DataSource("table", str(files["table"]), max_bytes=size)).split("train").inputs)


def test_hf_formats_read_by_the_teachers_tokenizer(tmp_path):
    teacher, student, corpus = llama_pair_with_corpus(tmp_path / "lm", TEXT)
    src = DataSource("hf_text", str(corpus), teacher_dir=str(teacher), student_dir=str(student), context_length=16)
    want = load_hf_text(corpus, teacher, student_dir=student, context_length=16)
    assert _same(load_data_source(src), want)
    enc_t, _ = bert_encoder_pair(tmp_path / "enc")
    lines = tmp_path / "lines.txt"  # one sentence a line
    lines.write_text(TEXT.replace(". ", ".\n"), encoding="utf-8")
    sentences = DataSource("hf_sentences", str(lines), teacher_dir=str(enc_t), context_length=12)
    assert _same(load_data_source(sentences), load_hf_sentences(lines, enc_t, max_length=12))
    with pytest.raises(InvalidParameterError, match="no teacher directory was given"):
        load_data_source(replace(src, teacher_dir=None))


def test_an_unknown_format_lists_the_formats():
    with pytest.raises(InvalidParameterError, match="Unknown data format 'parquet'") as err:
        load_data_source(DataSource("parquet", "x.parquet"))
    assert all(f in str(err.value) for f in FORMATS)


def test_an_unknown_mode_is_refused():
    with pytest.raises(InvalidParameterError, match="mode must be one of hf, factory; got 'dirs'"):
        OwnPairSource("dirs", "t", "s", DataSource("builtin", "digits"), "classifier")


def _factory(files, student_weights: str | None = None) -> OwnPairSource:
    data = DataSource("table", str(files["table"]), label_field="label")
    weights = str(files["student"]) if student_weights is None else student_weights
    return OwnPairSource("factory", TEACHER, STUDENT, data, "classifier", str(files["teacher"]), weights)


def test_the_explored_pair_is_the_pair_its_job_trains(files):
    """A factory source's pair and the pair a job built from its fields computes the same logits on the same
    data: what the app shows is what Distill trains."""
    src = _factory(files)
    explored = src.load()
    job = pair_for_config(JobConfig(**src.job_fields()).validate())
    assert _same(explored.dataset, job.dataset)
    x = explored.dataset.split("test").inputs[:16]
    assert torch.equal(explored.teacher.logits(x), job.teacher.logits(x))
    assert torch.equal(explored.student.logits(x), job.student.logits(x))


def test_a_factory_student_without_weights_is_its_seeded_init(files):
    src = _factory(files, student_weights="")
    assert src.untrained_student and not _factory(files).untrained_student
    torch.manual_seed(0)
    want = make_student().state_dict()
    got = src.load().student.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items())
    fields = src.job_fields("reinit")
    assert fields["student_weights"] == "" and JobConfig(**fields).problems() == []


def test_job_fields_carry_the_data_options(files):
    table = _factory(files).job_fields("from_teacher", layer_rule="first")
    assert table["data_options"] == {"format": "table", "label_field": "label"}
    assert (table["student_init"], table["layer_rule"], table["data"]) == ("from_teacher", "first", str(files["table"]))
    text = replace(_factory(files), data=DataSource("text", str(files["text"]), tokenizer="word")).job_fields()
    assert text["data_options"] == {"format": "text", "tokenizer": "word"}
    builtin = replace(_factory(files), data=DataSource("builtin", "digits")).job_fields()
    assert (builtin["data"], builtin["data_options"]) == ("digits", {})


def test_hf_job_fields(tmp_path):
    teacher, student, corpus = llama_pair_with_corpus(tmp_path, TEXT)
    data = DataSource("hf_text", str(corpus), teacher_dir=str(teacher), context_length=16, text_field="body")
    src = OwnPairSource("hf", str(teacher), str(student), data, "causal_lm")
    fields = src.job_fields("from_teacher", 2)
    assert fields["student"] == "" and fields["student_layers"] == 2
    assert fields["data_options"] == {"context_length": 16, "text_field": "body"}
    assert JobConfig(**fields).problems() == []
    assert src.job_fields()["student"] == str(student) and src.job_fields()["student_layers"] is None
    labelled = replace(data, format="hf_sentences", label_field="topic")
    assert replace(src, data=labelled, kind="sequence_classification").job_fields()["data_options"]["label_field"] == (
        "topic"
    )
    with pytest.raises(InvalidParameterError, match="trains on a data file read by the teacher's tokenizer"):
        replace(src, data=DataSource("builtin", "digits")).job_fields()


def test_a_kind_is_checked_against_config_json(tmp_path):
    teacher, student = llama_pair(tmp_path)
    check_kind(teacher, "causal_lm")
    with pytest.raises(InvalidParameterError, match="holds a LlamaForCausalLM .* Choose Kind 'causal_lm'"):
        check_kind(teacher, "classifier")
    check_kind(tmp_path, "classifier")  # no config.json: the loader speaks for itself
    assert (num_layers(teacher), num_layers(student), num_layers(tmp_path)) == (4, 2, None)
