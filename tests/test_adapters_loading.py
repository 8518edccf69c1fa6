"""Loading user models: Hugging Face directories (local only) and module:factory + safetensors."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from kdcore.adapters import load_factory, load_hf
from kdcore.weights import save_state_dict


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hf") / "tiny-llama"
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=17,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    ).save_pretrained(path)
    return path


def test_load_hf_is_local_and_eager(llama_dir):
    adapter = load_hf(llama_dir)
    assert adapter.name == "tiny-llama" and adapter.kind == "causal_lm" and adapter.output_size == 17
    assert adapter.model.config._attn_implementation == "eager"
    assert not adapter.model.training
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(llama_dir, local_files_only=True)
    ids = torch.randint(0, 17, (2, 5))
    torch.testing.assert_close(adapter.logits(ids), reference(ids).logits.detach())


def test_load_hf_dtype(llama_dir):
    adapter = load_hf(llama_dir, dtype="bfloat16", name="half")
    assert adapter.name == "half"
    assert all(p.dtype == torch.bfloat16 for p in adapter.model.parameters())
    assert adapter.logits(torch.randint(0, 17, (1, 4))).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="'dtype'"):
        load_hf(llama_dir, dtype="float8")


def test_load_hf_bad_directories(tmp_path, llama_dir):
    with pytest.raises(ValueError, match="does not exist"):
        load_hf(tmp_path / "missing")
    with pytest.raises(ValueError, match="no config.json"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no weights file"):
        load_hf(tmp_path)
    with pytest.raises(ValueError, match="'kind'"):
        load_hf(llama_dir, kind="seq2seq")


def test_load_hf_corrupt_files(tmp_path, llama_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((llama_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors" * 10)
    with pytest.raises(ValueError, match="Could not load a Hugging Face causal_lm model"):
        load_hf(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="Could not load"):
        load_hf(broken)
    config = json.loads((llama_dir / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "model_type": "no-such-architecture"}))
    with pytest.raises(ValueError, match="Could not load"):
        load_hf(broken)


def _user_module(tmp_path, monkeypatch, name):
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent("""
        from torch import nn
        def build(hidden=6, classes=3):
            return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        NOT_A_FACTORY = 3
        def returns_text():
            return "model"
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)


def test_load_factory_loads_the_weights(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "fac_ok")
    reference = nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 3))
    weights = save_state_dict(reference, tmp_path / "w.safetensors")
    adapter = load_factory("fac_ok:build", weights, factory_kwargs={"hidden": 9}, name="mine")
    x = torch.randn(2, 4)
    torch.testing.assert_close(adapter.logits(x), reference(x).detach())
    assert adapter.name == "mine" and adapter.output_size == 3


def test_load_factory_errors(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "fac_bad")
    weights = save_state_dict(nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 3)), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="'spec'"):
        load_factory("fac_bad.build", weights)
    with pytest.raises(ValueError, match="Could not import 'no_such_module_xyz'"):
        load_factory("no_such_module_xyz:build", weights)
    with pytest.raises(ValueError, match="no callable named 'NOT_A_FACTORY'"):
        load_factory("fac_bad:NOT_A_FACTORY", weights)
    with pytest.raises(ValueError, match="must return a torch.nn.Module"):
        load_factory("fac_bad:returns_text", weights)
    with pytest.raises(ValueError, match="factory_kwargs"):
        load_factory("fac_bad:build", weights, factory_kwargs={"depth": 3})
    with pytest.raises(ValueError, match=r"'0.weight': the model expects \[6, 4\], the weights have \[9, 4\]"):
        load_factory("fac_bad:build", weights)
    with pytest.raises(ValueError, match="does not exist"):
        load_factory("fac_bad:build", tmp_path / "missing.safetensors")
    torch.save(nn.Linear(4, 3), tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="Refused"):
        load_factory("fac_bad:build", tmp_path / "pickled.pt")


def test_load_factory_without_weights_keeps_the_factorys_own_init(tmp_path, monkeypatch):
    """weights_path=None: the factory's model as it builds it under the caller's seed (no file read)."""
    _user_module(tmp_path, monkeypatch, "fac_fresh")
    torch.manual_seed(7)
    adapter = load_factory("fac_fresh:build", None, factory_kwargs={"hidden": 5})
    torch.manual_seed(7)
    reference = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))  # what build(hidden=5) makes
    assert isinstance(adapter.model, nn.Sequential) and "no weights: factory init" in adapter.name
    for key, want in reference.state_dict().items():
        assert torch.equal(adapter.model.state_dict()[key], want), key
    x = torch.randn(3, 4, dtype=torch.float64)
    w = {k: v.double().numpy() for k, v in reference.state_dict().items()}
    h = np.maximum(x.numpy() @ w["0.weight"].T + w["0.bias"], 0.0) @ w["2.weight"].T + w["2.bias"]  # [3, 3]
    np.testing.assert_allclose(adapter.logits(x.float()).double().numpy(), h, rtol=1e-5, atol=1e-6)
    torch.manual_seed(8)
    assert not torch.equal(load_factory("fac_fresh:build").model[0].weight, adapter.model[0].weight)


def test_load_factory_without_weights_still_refuses_a_bad_spec_before_importing(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "fac_unrun")
    with pytest.raises(ValueError, match="'spec' parameter of load_factory must look like"):
        load_factory("fac_unrun.build", None)
    assert "fac_unrun" not in sys.modules  # nothing of the user's module ran
    with pytest.raises(ValueError, match="no callable named 'NOT_A_FACTORY'"):
        load_factory("fac_unrun:NOT_A_FACTORY")
