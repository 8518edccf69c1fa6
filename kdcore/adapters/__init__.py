"""Model adapters: one surface (logits, layers, features, attentions) for every kind of model.

- `wrap(model, name=...)`: an in-memory module (sample models, torchvision/timm classifiers,
  transformers models);
- `load_hf(path, kind=...)`: a Hugging Face causal LM, sequence classifier or encoder (pooled
  embedding as the output: `HFEncoderAdapter`) from a local directory (or a .gguf file);
- `load_gguf(path)`, `gguf_to_hf(path, out)`: a GGUF causal LM from its file, and saved back as a Hugging
  Face directory (the optional `gguf` package, not `accelerate`);
- `load_factory("pkg.mod:factory", weights)`: a user's architecture plus a safetensors state dict;
- `layer_subset_indices` and `make_student_from_teacher`: a shallower student initialised from its
  teacher's layers (METHODS §14.2), written as a Hugging Face directory;
- `init_from_teacher(teacher, student)`: the same for in-memory modules (CNN stages, layer lists).
"""

from kdcore.adapters.base import KINDS, ModelAdapter, eval_mode
from kdcore.adapters.factory import load_factory
from kdcore.adapters.gguf import ConvertedGGUF, gguf_to_hf, load_gguf
from kdcore.adapters.hf import HFAdapter
from kdcore.adapters.hf_encoder import HFEncoderAdapter
from kdcore.adapters.hf_load import load_hf
from kdcore.adapters.layer_subset import layer_subset_indices
from kdcore.adapters.make_student import MadeStudent, make_student_from_teacher
from kdcore.adapters.module import ModuleAdapter, wrap
from kdcore.adapters.module_student import adapter_from_teacher, checked_subset_plan, init_from_teacher, mapping_text

__all__ = ["ModelAdapter", "ModuleAdapter", "HFAdapter", "wrap", "load_hf", "load_factory", "eval_mode", "KINDS"]
__all__ += ["load_gguf", "gguf_to_hf", "ConvertedGGUF"]
__all__ += ["HFEncoderAdapter"]
__all__ += ["layer_subset_indices", "make_student_from_teacher", "MadeStudent"]
__all__ += ["adapter_from_teacher", "checked_subset_plan", "init_from_teacher", "mapping_text"]
