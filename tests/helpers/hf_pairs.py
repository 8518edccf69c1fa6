"""Tiny real Hugging Face pairs built from configs offline, saved as a user's checkpoints are.

Each model is written with ``save_pretrained`` into its own directory together with the shipped
tokenizer (sample_models/tokenizer, a byte-level BPE of 512 tokens), so tests go through the same
directory-loading path as a user's model:

- `llama_pair(root)`: Llama-style causal LMs with tied input/output embeddings, teacher 4 layers,
  student 2 layers (hidden 32, 4 heads, 2 key/value heads);
- `bert_pair(root)`: BERT-style encoders (sequence classifiers, 2 labels), teacher 4 layers,
  student 2 layers (hidden 32, 4 heads);
- `bert_encoder_pair(root)`: BERT-style encoders without a head (``BertModel``, loaded with
  ``load_hf(kind="encoder")``), teacher 4 layers of hidden 32, student 2 layers of hidden 24.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from sample_models.make_tokenizer import FILES as TOKENIZER_FILES
from sample_models.make_tokenizer import TOKENIZER_DIR

VOCAB = 512
MAX_POSITIONS = 64
PAD, BOS, EOS = 0, 1, 2
# the sizes every tiny test model shares
_TINY = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    max_position_embeddings=MAX_POSITIONS,
    pad_token_id=PAD,
)


def copy_tokenizer(out_dir: Path) -> None:
    """The shipped tokenizer's files into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(TOKENIZER_DIR / name, out_dir / name)


def llama_config(n_layers: int, **overrides):
    from transformers import LlamaConfig

    kwargs = dict(
        _TINY,
        num_hidden_layers=n_layers,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=BOS,
        eos_token_id=EOS,
        architectures=["LlamaForCausalLM"],
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def bert_config(n_layers: int, **overrides):
    from transformers import BertConfig

    kwargs = dict(
        _TINY,
        num_hidden_layers=n_layers,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        architectures=["BertForSequenceClassification"],
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def save_model(config, out_dir: Path, *, seed: int, tokenizer: bool = True) -> Path:
    """A model of config.architectures[0], seeded random weights, saved with save_pretrained (+ tokenizer)."""
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, config.architectures[0])(config).eval()
    model.save_pretrained(str(out_dir))
    if tokenizer:
        copy_tokenizer(out_dir)
    return out_dir


def llama_pair(root: Path, *, teacher_layers: int = 4, student_layers: int = 2) -> tuple[Path, Path]:
    """(teacher_dir, student_dir) of a tied-embedding Llama-style causal LM pair under root."""
    teacher = save_model(llama_config(teacher_layers), root / "llama_teacher", seed=1)
    student = save_model(llama_config(student_layers), root / "llama_student", seed=2)
    return teacher, student


def llama_pair_with_corpus(root: Path, text: str) -> tuple[Path, Path, Path]:
    """(teacher_dir, student_dir, corpus.txt) under root: llama_pair's models and `text` as a plain-text corpus."""
    teacher, student = llama_pair(root)
    (root / "corpus.txt").write_text(text)
    return teacher, student, root / "corpus.txt"


def bert_pair(root: Path, *, teacher_layers: int = 4, student_layers: int = 2) -> tuple[Path, Path]:
    """(teacher_dir, student_dir) of a BERT-style encoder (sequence classifier) pair under root."""
    teacher = save_model(bert_config(teacher_layers), root / "bert_teacher", seed=3)
    student = save_model(bert_config(student_layers), root / "bert_student", seed=4)
    return teacher, student


def bert_encoder_pair(
    root: Path, *, teacher_layers: int = 4, student_layers: int = 2, student_hidden: int = 24
) -> tuple[Path, Path]:
    """(teacher_dir, student_dir) of a BERT-style encoder pair (BertModel) under root; widths may differ."""
    teacher = save_model(bert_config(teacher_layers, architectures=["BertModel"]), root / "enc_teacher", seed=5)
    student_config = bert_config(
        student_layers, hidden_size=student_hidden, intermediate_size=2 * student_hidden, architectures=["BertModel"]
    )
    student = save_model(student_config, root / "enc_student", seed=6)
    return teacher, student
