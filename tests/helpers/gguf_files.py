"""A tiny Llama written as a GGUF file, the way llama.cpp's converter writes one (our own small writer).

`write_llama_gguf(model_dir, path)` reads a Llama directory made by tests/helpers/hf_pairs.py (weights from
model.safetensors, config.json, the shipped byte-level BPE tokenizer.json) and writes it with the `gguf`
package's GGUFWriter:

- metadata under llama.cpp's keys (llama.context_length, llama.block_count, llama.attention.head_count, ...);
- the tokenizer as a "gpt2" vocabulary: tokens in id order, token types (3 = control for the special
  tokens), merges as "a b" strings, and the special token ids;
- the tensors under llama.cpp's names (token_embd, blk.N.attn_q, ..., output_norm; output only when the
  embeddings are untied), with attn_q/attn_k rows permuted as llama.cpp's convert_hf_to_gguf.py does, which
  transformers' GGUF loader undoes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
CONTROL, NORMAL = 3, 1  # llama.cpp's token types
UNK = 3  # "<unk>" in the shipped tokenizer


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's permutation of q/k rows [n_head * head_dim, in] (interleaved rotary halves)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model_dir: Path, config: dict) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's tensor names, q/k permuted."""
    state = load_file(str(model_dir / "model.safetensors"))
    out = {"token_embd.weight": state["model.embed_tokens.weight"], "output_norm.weight": state["model.norm.weight"]}
    if "lm_head.weight" in state and not config.get("tie_word_embeddings", False):
        out["output.weight"] = state["lm_head.weight"]
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    for i in range(config["num_hidden_layers"]):
        for hf, gg in _LAYER_NAMES.items():
            w = state[f"model.layers.{i}.{hf}.weight"]
            out[f"blk.{i}.{gg}.weight"] = permute_rows(w, heads[gg]) if gg in heads else w
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _add_tokenizer(writer, tokenizer_json: dict, special: dict[str, int]) -> None:
    vocab: dict[str, int] = dict(tokenizer_json["model"]["vocab"])
    for t in tokenizer_json["added_tokens"]:
        vocab[t["content"]] = t["id"]
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    specials = {t["content"] for t in tokenizer_json["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if t in specials else NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(special["bos"])
    writer.add_eos_token_id(special["eos"])
    writer.add_pad_token_id(special["pad"])
    writer.add_unk_token_id(special["unk"])
    writer.add_add_bos_token(True)


def write_llama_gguf(
    model_dir: Path,
    path: Path,
    *,
    architecture: str = "llama",
    qtype: str | None = None,
    drop: tuple[str, ...] = (),
    metadata: dict | None = None,
) -> Path:
    """model_dir (a Llama saved by save_pretrained, with tokenizer.json) as a GGUF file at path.

    Tensors are float32, or with qtype (e.g. "Q8_0") the 2-D weight matrices are quantised by the gguf
    package; tensors named in drop are left out (an incomplete file); architecture is what the metadata
    says (general.architecture and the prefix of its keys); metadata overrides config.json's values in
    the metadata only (e.g. {"intermediate_size": 48}: a file whose tensors do not fit its metadata).
    """
    import gguf

    config = json.loads((model_dir / "config.json").read_text())
    tensors = gguf_tensors(model_dir, config)
    config.update(metadata or {})
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config.get("rope_theta") or config["rope_parameters"]["rope_theta"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(0 if qtype is None else int(gguf.LlamaFileType[f"MOSTLY_{qtype}"]))
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    ids = {"bos": config["bos_token_id"], "eos": config["eos_token_id"], "pad": config["pad_token_id"], "unk": UNK}
    _add_tokenizer(writer, tok, ids)
    for name, w in tensors.items():
        if name in drop:
            continue
        if qtype is not None and w.ndim == 2:
            q = gguf.GGMLQuantizationType[qtype]
            writer.add_tensor(name, gguf.quants.quantize(w, q), raw_dtype=q)
        else:
            writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
