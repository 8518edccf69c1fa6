"""ModelAdapter.hidden_and_head: final hidden states and the output head, whose projection is the
model's logits, for Hugging Face causal LMs (base model + get_output_embeddings) and plain modules
(a pre-hook on the head that stops the pass); models that transform their logits are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdcore.adapters import wrap
from tests.helpers.hf_pairs import llama_config


def _llama(**overrides):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return wrap(LlamaForCausalLM(llama_config(2, **overrides)).eval(), name="llama", kind="causal_lm")


def _ids(seed: int, vocab: int, b: int = 2, length: int = 9) -> torch.Tensor:
    return torch.randint(3, vocab, (b, length), generator=torch.Generator().manual_seed(seed))


def test_hf_causal_lm_hidden_and_tied_head_give_its_logits():
    adapter = _llama()
    ids = _ids(0, 512)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0  # right padding
    inputs = {"input_ids": ids, "attention_mask": mask}
    hidden, weight, bias = adapter.hidden_and_head(inputs)
    assert hidden.shape == (2, 9, 32) and weight.shape == (512, 32) and bias is None
    assert weight is adapter.model.get_input_embeddings().weight  # tied: the same tensor, not a copy
    torch.testing.assert_close(F.linear(hidden, weight, bias), adapter.logits(inputs), rtol=1e-5, atol=1e-5)
    assert hidden.requires_grad  # the graph is kept for training


def test_plain_module_head_is_stopped_by_a_hook_that_is_removed():
    from sample_models.architectures import TinyLangTeacher

    torch.manual_seed(1)
    model = TinyLangTeacher(vocab_size=38).eval()
    adapter = wrap(model, name="tiny", kind="causal_lm")
    ids = _ids(1, 38)
    calls = []
    model.unembed.register_forward_hook(lambda *a: calls.append(1))  # the test's own probe of head runs
    hidden, weight, bias = adapter.hidden_and_head(ids)
    assert calls == []  # the head never ran: no [B, L, V] logits were computed
    assert len(model.unembed._forward_pre_hooks) == 0  # our hook is gone
    torch.testing.assert_close(F.linear(hidden, weight, bias), adapter.logits(ids), rtol=1e-5, atol=1e-6)


def test_models_that_transform_their_logits_and_classifiers_are_refused():
    adapter = _llama(logit_scale=0.5)
    assert "logit_scale" in adapter.hidden_head_problem()
    with pytest.raises(ValueError, match="transforms its logits after the output head"):
        adapter.hidden_and_head(_ids(2, 512))
    from sample_models.architectures import DigitsStudent

    classifier = wrap(DigitsStudent(), name="cnn", kind="classifier")
    with pytest.raises(ValueError, match="causal LMs only"):
        classifier.hidden_and_head(torch.zeros(1, 1, 8, 8))
