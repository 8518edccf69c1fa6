"""The shipped tokenizer (sample_models/tokenizer): reproducible from its script, loadable offline."""

import json

from transformers import AutoTokenizer

from sample_models.make_tokenizer import FILES, SPECIAL_TOKENS, TOKENIZER_DIR, VOCAB_SIZE, main, write_tokenizer


def _model(path):
    return json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]


def test_rerunning_the_script_gives_the_same_bytes(tmp_path):
    main(["--out", str(tmp_path / "a")])
    write_tokenizer(tmp_path / "b")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_the_committed_files_are_what_the_script_writes(tmp_path):
    write_tokenizer(tmp_path)
    fresh, shipped = _model(tmp_path), _model(TOKENIZER_DIR)
    assert fresh["vocab"] == shipped["vocab"] and fresh["merges"] == shipped["merges"]
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / name).read_bytes() == (TOKENIZER_DIR / name).read_bytes()


def test_it_loads_offline_as_a_fast_tokenizer_and_round_trips_any_text():
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    assert len(tok) == VOCAB_SIZE and tok.is_fast
    assert tok.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == list(SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    text = "Distil the teacher: naïve café, 日本語, emoji 🙂 and\ttabs\n"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids  # byte-level: nothing unknown
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert len(tok("knowledge distillation")["input_ids"]) < len("knowledge distillation")  # merges learned
