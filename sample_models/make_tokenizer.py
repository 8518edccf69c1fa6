"""Build the workbench's shipped tokenizer: a small byte-level BPE trained on ``tokenizer/corpus.txt``.

    python -m sample_models.make_tokenizer            # rewrites sample_models/tokenizer/
    python -m sample_models.make_tokenizer --out DIR  # writes elsewhere

The result loads offline with ``transformers.AutoTokenizer.from_pretrained(DIR, local_files_only=True)``
(a ``PreTrainedTokenizerFast``). It is what the tests' tiny Hugging Face pairs use, and a tokenizer a
user can copy next to a model built from a config. Training is deterministic: the same corpus and
settings give the same vocabulary and merges, and the files are written with sorted keys, so a
re-run gives the same bytes.

Special tokens (ids 0..4): ``<pad>``, ``<s>`` (BOS, also CLS), ``</s>`` (EOS, also SEP), ``<unk>``,
``<mask>``. Byte-level: every byte is in the vocabulary, so no text ever maps to ``<unk>``. Encoding
a text with special tokens prepends ``<s>`` (as Llama-style tokenizers do).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOKENIZER_DIR = ROOT / "tokenizer"
CORPUS = TOKENIZER_DIR / "corpus.txt"
VOCAB_SIZE = 512
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")
MODEL_MAX_LENGTH = 512
_ROLES = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
    "cls_token": "<s>",
    "sep_token": "</s>",
}
FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train_tokenizer(corpus: Path = CORPUS, vocab_size: int = VOCAB_SIZE):  # -> tokenizers.Tokenizer
    """A byte-level BPE (no normaliser, GPT-2 pre-tokenisation) trained on the corpus's lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A </s> $B:1", special_tokens=[("<s>", bos), ("</s>", tok.token_to_id("</s>"))]
    )
    return tok


def write_tokenizer(out_dir: Path = TOKENIZER_DIR, corpus: Path = CORPUS) -> list[Path]:
    """Train and write tokenizer.json, tokenizer_config.json and special_tokens_map.json into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(corpus)
    tokenizer_json = json.loads(tok.to_str())
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        **_ROLES,
    }
    contents = {"tokenizer.json": tokenizer_json, "tokenizer_config.json": config, "special_tokens_map.json": _ROLES}
    paths = []
    for file_name in FILES:
        path = out_dir / file_name
        path.write_text(
            json.dumps(contents[file_name], indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TOKENIZER_DIR, help="folder to write (default: %(default)s)")
    args = parser.parse_args(argv)
    for path in write_tokenizer(args.out):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
