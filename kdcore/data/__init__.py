"""Datasets: generated and bundled samples, and the user's own data. See base.py for the surface."""

from kdcore.data.base import IGNORE_INDEX, SPLITS, Dataset, SplitData
from kdcore.data.hf_sentences import load_hf_sentences
from kdcore.data.hf_text import load_hf_text
from kdcore.data.hf_tokenizer import HFTextTokenizer, check_same_tokenizer, load_hf_tokenizer
from kdcore.data.image_folder import load_image_folder
from kdcore.data.registry import DATASETS, get_dataset
from kdcore.data.table import load_table
from kdcore.data.text import load_text
from kdcore.data.tokenizers import CharTokenizer, WordTokenizer, tokenizer_from_dict

__all__ = ["Dataset", "SplitData", "SPLITS", "IGNORE_INDEX", "DATASETS", "get_dataset"]
__all__ += ["load_image_folder", "load_table", "load_text", "CharTokenizer", "WordTokenizer", "tokenizer_from_dict"]
__all__ += ["load_hf_sentences", "load_hf_text", "load_hf_tokenizer", "check_same_tokenizer", "HFTextTokenizer"]
