"""GGUF files: a tiny Llama written as GGUF by the `gguf` package's writer (tests/helpers/gguf_files.py, q/k rows
permuted as llama.cpp does) loads with load_gguf / load_hf with the original model's logits, without
`accelerate`; its tokenizer comes from the file; gguf_to_hf and `python -m kdcore gguf-to-hf` save it back as a
Hugging Face directory (tied embeddings kept tied); bad input is refused before anything is written.

`make setup` installs the `gguf` extra (`pip install -e '.[dev,gguf]'`), so these tests always run there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from kdcore.adapters import gguf_to_hf, load_gguf, load_hf
from kdcore.adapters.gguf_files import load_gguf_tokenizer
from kdcore.cli import main
from kdcore.data.hf_text import load_hf_text
from kdcore.data.hf_tokenizer import load_hf_tokenizer
from kdcore.validation import InvalidParameterError
from tests.helpers.gguf_files import permute_rows, write_llama_gguf
from tests.helpers.hf_pairs import VOCAB, llama_config, save_model

TEXT = "The teacher reads the text. A student learns from the teacher's soft labels!\n\nNew paragraph: 123 cats."


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Hugging Face directories (tied and untied Llama) and GGUF files written from them."""
    root = tmp_path_factory.mktemp("gguf")
    tied = save_model(llama_config(2), root / "tied", seed=11)
    untied = save_model(llama_config(2, tie_word_embeddings=False), root / "untied", seed=12)
    return {
        "tied_dir": tied,
        "untied_dir": untied,
        "tied": write_llama_gguf(tied, root / "tied.gguf"),
        "untied": write_llama_gguf(untied, root / "untied.gguf"),
        "q8": write_llama_gguf(tied, root / "tied.Q8_0.gguf", qtype="Q8_0"),
        "incomplete": write_llama_gguf(tied, root / "incomplete.gguf", drop=("blk.1.ffn_up.weight",)),
        "bert": write_llama_gguf(tied, root / "bert.gguf", architecture="bert"),
        "qwen35": write_llama_gguf(tied, root / "qwen35.gguf", architecture="qwen35"),
        "t5": write_llama_gguf(tied, root / "t5.gguf", architecture="t5"),
        "misfit": write_llama_gguf(tied, root / "misfit.gguf", metadata={"intermediate_size": 48}),
        "root": root,
    }


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(seed))  # [B, L]


def _reference_logits(model_dir: Path, ids: torch.Tensor) -> np.ndarray:
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(str(model_dir), local_files_only=True).eval()
    with torch.no_grad():
        return model(ids).logits.double().numpy()  # [B, L, V]


@pytest.mark.parametrize("which", ["tied", "untied"])
def test_load_gguf_gives_the_original_models_logits(files, which):
    ids = _ids(1)
    adapter = load_gguf(files[which])
    assert adapter.kind == "causal_lm" and adapter.name == which
    got = adapter.logits(ids).detach().double().numpy()
    np.testing.assert_allclose(got, _reference_logits(files[f"{which}_dir"], ids), rtol=0, atol=1e-5)
    head, emb = adapter.model.get_output_embeddings(), adapter.model.get_input_embeddings()
    assert (head.weight is emb.weight) == (which == "tied")


def test_the_q_k_permutation_is_what_the_loader_undoes(files):
    """The writer's permutation is not the identity, so equal logits above mean the loader un-permuted."""
    w = np.arange(32 * 4, dtype=np.float32).reshape(32, 4)
    p = permute_rows(w, 4)
    assert not np.array_equal(p, w) and np.array_equal(np.sort(p, axis=None), np.sort(w, axis=None))
    q_dir = load_hf(files["tied_dir"]).model.model.layers[0].self_attn.q_proj.weight.detach()
    q_gguf = load_gguf(files["tied"]).model.model.layers[0].self_attn.q_proj.weight.detach()
    assert torch.equal(q_dir, q_gguf)


def test_load_hf_dispatches_a_gguf_path_and_dtype_device_apply(files):
    adapter = load_hf(files["tied"], dtype="bfloat16", name="teacher")
    assert adapter.name == "teacher" and adapter.kind == "causal_lm"
    assert {p.dtype for p in adapter.model.parameters()} == {torch.bfloat16}
    ids = _ids(2)
    got = adapter.logits(ids).float().detach().double().numpy()
    np.testing.assert_allclose(got, _reference_logits(files["tied_dir"], ids), atol=0.1)


def test_a_quantised_gguf_loads_dequantised(files):
    """Q8_0 weights: the model holds the gguf package's own dequantisation of each block, exactly."""
    import gguf

    q = gguf.GGMLQuantizationType.Q8_0
    w = load_hf(files["tied_dir"]).model.model.layers[1].mlp.down_proj.weight.detach().numpy()  # [H, I]
    expected = gguf.quants.dequantize(gguf.quants.quantize(w, q), q)
    model = load_gguf(files["q8"]).model
    got = model.model.layers[1].mlp.down_proj.weight.detach().numpy()
    np.testing.assert_array_equal(got, expected)
    assert 0 < np.abs(got - w).max() < 0.01  # quantised, close to the original


def test_loading_needs_no_accelerate(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # any `import accelerate` now raises ImportError
    ids = _ids(3)
    got = load_gguf(files["untied"]).logits(ids).detach().double().numpy()
    np.testing.assert_allclose(got, _reference_logits(files["untied_dir"], ids), atol=1e-5)


def test_the_tokenizer_comes_from_the_file(files):
    from_file = load_gguf_tokenizer(files["tied"])
    shipped = load_hf_tokenizer(files["tied_dir"])
    assert len(from_file) == VOCAB  # nothing beyond the model's embedding
    assert from_file(TEXT)["input_ids"] == shipped(TEXT)["input_ids"]
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(from_file, role) == getattr(shipped, role)
    assert load_hf_tokenizer(files["tied"]).get_vocab() == from_file.get_vocab()


def test_load_hf_text_takes_a_gguf_path(files):
    text = ((TEXT + " ") * 6 + "\n\n") * 8
    kwargs = dict(context_length=24, name="t", seed=3)
    from_file = load_hf_text(text.encode(), files["tied"], student_dir=files["untied"], **kwargs)
    from_dir = load_hf_text(text.encode(), files["tied_dir"], **kwargs)
    a, b = from_file.build(), from_dir.build()
    for split in a:
        assert torch.equal(a[split].inputs, b[split].inputs) and torch.equal(a[split].targets, b[split].targets)
    assert from_file.vocab_size == VOCAB and from_file.load_report["tokenizer_size"] == VOCAB
    with pytest.raises(InvalidParameterError, match="at most the model's max_position_embeddings, 64"):
        load_hf_text(text.encode(), files["tied"], context_length=65)


def test_gguf_to_hf_round_trip_keeps_weights_tokenizer_and_ties(files, tmp_path):
    out = tmp_path / "hf"
    made = gguf_to_hf(files["tied"], out)
    assert made.path == out and made.architecture == "llama" and made.model_type == "llama"
    assert made.tied_embeddings and {"config.json", "model.safetensors", "tokenizer.json"} <= set(made.files)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()  # saved once
    reloaded = load_hf(out)
    assert reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight
    ids = _ids(4)
    got = reloaded.logits(ids).detach().double().numpy()
    np.testing.assert_allclose(got, _reference_logits(files["tied_dir"], ids), atol=1e-5)
    tok = load_hf_tokenizer(out)
    assert len(tok) == VOCAB and tok(TEXT)["input_ids"] == load_hf_tokenizer(files["tied_dir"])(TEXT)["input_ids"]


def test_cli_gguf_to_hf_writes_an_untied_model(files, tmp_path, capsys):
    out = tmp_path / "untied_hf"
    capsys.readouterr()
    assert main(["gguf-to-hf", str(files["untied"]), "--out", str(out), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["path"] == str(out) and made["tied_embeddings"] is False
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["num_hidden_layers"] == 2
    ids = _ids(5)
    got = load_hf(out).logits(ids).detach().double().numpy()
    np.testing.assert_allclose(got, _reference_logits(files["untied_dir"], ids), atol=1e-5)


def _refused(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["gguf-to-hf", *argv]) == 2
    return capsys.readouterr().err


def test_cli_refuses_a_non_empty_out_and_writes_nothing(files, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = _refused(capsys, str(files["tied"]), "--out", str(out))
    assert err.startswith("error: ") and "is not empty" in err and err.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_file_that_is_not_gguf_is_refused_by_its_magic_bytes(files, tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(InvalidParameterError, match=r"is not a GGUF file: it starts with b'PK\\x03\\x04'"):
        load_gguf(fake)
    err = _refused(capsys, str(files["tied_dir"] / "config.json"), "--out", str(tmp_path / "o"))
    assert "is not a GGUF file" in err and "b'GGUF'" in err
    assert not (tmp_path / "o").exists()


def test_an_architecture_transformers_cannot_read_is_named_with_the_supported_list(files, tmp_path, capsys):
    with pytest.raises(InvalidParameterError) as info:
        load_gguf(files["bert"])
    message = str(info.value)
    assert "architecture 'bert'" in message and "'llama'" in message and "'qwen2'" in message
    err = _refused(capsys, str(files["bert"]), "--out", str(tmp_path / "o"))
    assert "architecture 'bert'" in err and not (tmp_path / "o").exists()


def test_an_architecture_only_from_pretrained_reads_is_refused_before_building(files):
    with pytest.raises(InvalidParameterError, match=r"architecture 'qwen35'.*requires accelerate"):
        load_gguf(files["qwen35"])


@pytest.mark.slow  # imports transformers' t5 modules (about 2 s)
def test_an_architecture_without_a_causal_lm_class_is_refused(files):
    with pytest.raises(
        InvalidParameterError, match=r"architecture 't5' \(model_type 't5'\), which transformers has no"
    ):
        load_gguf(files["t5"])


def test_an_incomplete_file_is_refused_naming_the_missing_tensor(files):
    with pytest.raises(InvalidParameterError, match=r"no tensor for 1 .*model\.layers\.1\.mlp\.up_proj\.weight"):
        load_gguf(files["incomplete"])


def test_tensors_that_do_not_fit_the_metadata_are_refused(files):
    with pytest.raises(InvalidParameterError, match=r"do not fit the model its metadata describes: .*size mismatch"):
        load_gguf(files["misfit"])


def test_a_missing_gguf_package_names_the_install_command(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[gguf\]'"):
        load_gguf(files["tied"])
    err = _refused(capsys, str(files["tied"]), "--out", str(tmp_path / "o"))
    assert "pip install -e '.[gguf]'" in err and not (tmp_path / "o").exists()


def test_bad_paths_and_kinds_are_refused(files, tmp_path):
    with pytest.raises(InvalidParameterError, match="does not exist"):
        load_gguf(tmp_path / "absent.gguf")
    with pytest.raises(InvalidParameterError, match="is a directory"):
        load_gguf(files["tied_dir"])
    with pytest.raises(InvalidParameterError, match="must be 'causal_lm'"):
        load_gguf(files["tied"], kind="sequence_classification")
    with pytest.raises(InvalidParameterError, match="must be a directory path"):
        gguf_to_hf(files["tied"], 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="a file"):
        gguf_to_hf(files["tied"], files["untied"])
