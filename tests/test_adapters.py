"""Common checks over every adapter kind (CONVENTIONS.md §9): small CNN, MLP, a residual net in
torchvision style, a tiny causal transformer with forward_with_attentions, a module:factory model,
and Hugging Face Llama-style and GPT-2-style causal LMs and a Llama sequence classifier, built from
tiny configs offline, saved with save_pretrained and loaded back through load_hf."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest
import torch
from torch import nn

from kdcore.adapters import HFAdapter, ModelAdapter, ModuleAdapter, load_factory, load_hf, wrap
from kdcore.hooks import capture_features, count_capture_hooks
from kdcore.weights import save_state_dict

B, L = 3, 6


# ---- tiny models with known structure ------------------------------------------------------------
def tiny_cnn(num_classes: int = 5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),  # [B, 4, 8, 8]
        nn.Conv2d(4, 6, 3, padding=1, stride=2),
        nn.ReLU(),  # [B, 6, 4, 4]
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(6 * 4 * 4, num_classes),  # [B, C]
    )


def tiny_mlp(num_classes: int = 4) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(7, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, num_classes)
    )


class _Basic(nn.Module):
    """torchvision's BasicBlock pattern: in-place add and ReLU on the block's own tensors."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class TinyResNet(nn.Module):
    """A torchvision-style classifier (conv1, bn1, layer1, layer2, fc) with global pooling."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu = (
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
        )
        self.layer1 = nn.Sequential(_Basic(4), _Basic(4))
        self.layer2 = nn.Sequential(_Basic(4))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, num_classes)

    def stem(self, x):
        return self.relu(self.bn1(self.conv1(x)))

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2, self.mlp, self.drop = (
            nn.LayerNorm(d),
            nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)),
            nn.Dropout(0.2),
        )

    def forward(self, x):  # x [B, L, D] -> (x [B, L, D], att [B, H, L, L])
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # [B, H, L, hd]
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # [B, H, L, L]
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        att = self.drop(scores.masked_fill(~causal, float("-inf")).softmax(-1))
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x)), att


class TinyCausalLM(nn.Module):
    """A two-block causal transformer exposing forward_with_attentions, like our sample LMs."""

    feature_layers = ("blocks.0", "blocks.1")

    def __init__(self, vocab: int = 11, d: int = 8, heads: int = 2, n_layers: int = 2, max_len: int = 16) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(n_layers))
        self.head = nn.Linear(d, vocab)

    def forward_with_attentions(self, ids):  # ids [B, L] -> (logits [B, L, V], [B, H, L, L] per block)
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        atts = []
        for block in self.blocks:
            x, att = block(x)
            atts.append(att)
        return self.head(x), atts

    def forward(self, ids):
        return self.forward_with_attentions(ids)[0]


# ---- cases: (adapter, inputs, expected output shape, manual features) ----------------------------
def _sequential_manual(model, x, layers):
    out, feats = x, {}
    for i, module in enumerate(model):
        out = module(out.clone())
        if str(i) in layers:
            feats[str(i)] = out.clone()
    return feats


def _resnet_manual(model, x, layers):
    feats = {"conv1": model.conv1(x), "bn1": model.bn1(model.conv1(x))}
    h = model.stem(x)
    for name in ("layer1.0", "layer1.1", "layer2.0"):
        h = model.get_submodule(name)(h.clone())
        feats[name] = h.clone()
    feats["fc"] = model(x)
    return {k: feats[k] for k in layers}


def _lm_manual(model, ids, layers):
    x = model.embed(ids) + model.pos(torch.arange(ids.shape[1]))
    feats = {"embed": model.embed(ids)}
    for i, block in enumerate(model.blocks):
        x = block(x)[0]
        feats[f"blocks.{i}"] = x
    return {k: feats[k] for k in layers}


def _hf_manual(model, ids, layers):
    out = model(input_ids=ids, output_hidden_states=True)
    hs = out.hidden_states  # embeddings (after any position embedding), block outputs..., last after the final norm
    inner = model.get_submodule(model.base_model_prefix)
    blocks = [n for n, _ in inner.named_children() if n in ("layers", "h")][0]
    prefix = f"{model.base_model_prefix}.{blocks}"
    feats = {f"{prefix}.{i}": hs[i + 1] for i in range(len(hs) - 2)}
    final_norm = [n for n in ("norm", "ln_f") if hasattr(inner, n)][0]
    feats[f"{model.base_model_prefix}.{final_norm}"] = hs[-1]
    return {k: feats[k] for k in layers if k in feats}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM, LlamaForSequenceClassification

    from tests.helpers.hf_pairs import llama_config

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    # 2 layers, 4 heads, 2 key/value heads, untied embeddings, a vocabulary of 23
    llama = dict(
        vocab_size=23, hidden_size=16, intermediate_size=32, max_position_embeddings=32, tie_word_embeddings=False
    )
    LlamaForCausalLM(llama_config(2, **llama)).save_pretrained(root / "llama")
    GPT2LMHeadModel(
        GPT2Config(vocab_size=19, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0)
    ).save_pretrained(root / "gpt2")
    LlamaForSequenceClassification(llama_config(2, **llama, num_labels=3)).save_pretrained(root / "llama_cls")
    return root


def _factory_module(tmp_path, monkeypatch):
    (tmp_path / "user_models_for_test.py").write_text(
        textwrap.dedent("""
        from torch import nn
        def build(num_classes=5):
            return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                                 nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5),
                                 nn.Linear(6 * 4 * 4, num_classes))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_models_for_test", None)


CASES = ["cnn", "mlp", "resnet", "tiny_lm", "factory", "hf_llama", "hf_gpt2", "hf_llama_cls"]


@pytest.fixture(params=CASES)
def case(request, tmp_path, monkeypatch):
    kind = request.param
    if kind == "cnn":
        model = tiny_cnn()
        return wrap(model, name="cnn"), torch.randn(B, 1, 8, 8), (B, 5), _sequential_manual
    if kind == "mlp":
        return wrap(tiny_mlp(), name="mlp"), torch.randn(B, 7), (B, 4), _sequential_manual
    if kind == "resnet":
        return wrap(TinyResNet(), name="resnet"), torch.randn(B, 3, 10, 10), (B, 5), _resnet_manual
    if kind == "tiny_lm":
        return wrap(TinyCausalLM(), name="lm", kind="causal_lm"), torch.randint(0, 11, (B, L)), (B, L, 11), _lm_manual
    if kind == "factory":
        _factory_module(tmp_path, monkeypatch)
        weights = save_state_dict(tiny_cnn(), tmp_path / "w.safetensors")
        adapter = load_factory("user_models_for_test:build", weights)
        return adapter, torch.randn(B, 1, 8, 8), (B, 5), _sequential_manual
    adapter = request.getfixturevalue("hf_adapters")[kind]
    adapter.model.eval()  # loaded once per module: undo what the previous test did
    adapter.model.zero_grad(set_to_none=True)
    if kind == "hf_llama":
        return adapter, torch.randint(0, 23, (B, L)), (B, L, 23), _hf_manual
    if kind == "hf_gpt2":
        return adapter, torch.randint(0, 19, (B, L)), (B, L, 19), _hf_manual
    return adapter, torch.randint(3, 23, (B, L)), (B, 3), _hf_manual


@pytest.fixture(scope="module")
def hf_adapters(hf_dirs):
    return {
        "hf_llama": load_hf(hf_dirs / "llama"),
        "hf_gpt2": load_hf(hf_dirs / "gpt2"),
        "hf_llama_cls": load_hf(hf_dirs / "llama_cls", kind="sequence_classification"),
    }


def _modes(model):
    return [m.training for m in model.modules()]


def _mixed_train(model):
    """Train mode with one submodule left in eval mode (a frozen part): the state to preserve."""
    model.train()
    list(model.modules())[-1].eval()
    return _modes(model)


# ---- the common checks ----------------------------------------------------------------------------
def test_output_shape_size_and_no_nan(case):
    adapter, x, shape, _ = case
    logits = adapter.logits(x)
    assert tuple(logits.shape) == shape
    assert torch.isfinite(logits).all()
    assert adapter.output_size == shape[-1]
    assert adapter.kind == ("causal_lm" if len(shape) == 3 else "classifier")
    assert not logits.requires_grad


def test_layers_listed(case):
    adapter, x, _, _ = case
    names = adapter.layer_names()
    assert names == [n for n, m in adapter.model.named_modules() if n and not isinstance(m, nn.ModuleList)]
    assert len(names) >= 3
    defaults = adapter.default_layers()
    assert defaults and set(defaults) <= set(names)
    assert len(defaults) == len(set(defaults))
    with capture_features(adapter.model, names) as feats:  # every listed name can be hooked
        adapter.logits(x)
    assert set(defaults) <= set(feats) <= set(names)


def test_captured_features_equal_manual_forward(case):
    adapter, x, _, manual = case
    layers = adapter.default_layers()
    feats = adapter.capture(x, layers)
    assert list(feats) == layers
    adapter.model.eval()
    with torch.no_grad():
        expected = manual(adapter.model, x, layers)
    assert expected, "the manual forward must cover at least one default layer"
    for name, want in expected.items():
        got = feats[name]
        assert got.device.type == "cpu" and not got.requires_grad
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=f"layer {name}")


def test_no_hook_left_after_an_exception(case):
    adapter, x, _, _ = case
    model = adapter.model
    before = _mixed_train(model)
    last = adapter.default_layers()[-1]

    def boom(module, args, output):
        raise RuntimeError("injected failure")

    others = sum(len(m._forward_hooks) for m in model.modules())  # the library's own hooks, if any
    handle = model.get_submodule(last).register_forward_hook(boom)
    try:
        for call in (
            lambda: adapter.capture(x, adapter.default_layers()),
            lambda: adapter.forward_features(x, adapter.default_layers()),
        ):
            with pytest.raises(RuntimeError, match="injected failure"):
                call()
            assert count_capture_hooks(model) == 0
            assert sum(len(m._forward_hooks) for m in model.modules()) == others + 1  # only the injected one
        with pytest.raises(RuntimeError, match="injected failure"):
            adapter.logits(x)
        assert _modes(model) == before
    finally:
        handle.remove()


def test_train_eval_mode_unchanged(case):
    adapter, x, _, _ = case
    model = adapter.model
    before = _mixed_train(model)
    first = adapter.logits(x)
    assert _modes(model) == before
    torch.testing.assert_close(adapter.logits(x), first)  # eval inside: dropout is off, so repeatable
    adapter.capture(x, adapter.default_layers())
    adapter.attentions(x)
    assert adapter.latency(x, repeats=2, warmup=0) > 0
    assert _modes(model) == before
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(adapter.logits(x), first)
    assert not any(_modes(model))


def test_forward_features_keeps_graph_and_mode(case):
    adapter, x, shape, _ = case
    model = adapter.model
    before = _mixed_train(model)
    logits, feats = adapter.forward_features(x, adapter.default_layers())
    assert _modes(model) == before
    assert tuple(logits.shape) == shape and logits.requires_grad
    loss = sum(f.float().pow(2).mean() for f in feats.values() if f.is_floating_point() and f.requires_grad)
    assert loss.requires_grad
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert count_capture_hooks(model) == 0


def test_attentions(case):
    adapter, x, shape, _ = case
    atts = adapter.attentions(x)
    if isinstance(adapter.model, (nn.Sequential, TinyResNet)):
        assert atts is None
        return
    assert atts is not None and len(atts) == 2
    for a in atts:
        assert a.dim() == 4 and a.shape[0] == B and a.shape[2] == a.shape[3] == L
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
        assert torch.all(a.triu(diagonal=1) == 0), "causal attention never looks ahead"


def test_num_parameters(case):
    adapter, *_ = case
    unique = {id(p): p.numel() for p in adapter.model.parameters()}
    assert adapter.num_parameters() == sum(unique.values()) > 0


def test_clone_is_independent_and_reinit_is_seeded(case):
    adapter, x, _, _ = case
    original = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    twin = adapter.clone()
    assert twin.model is not adapter.model and type(twin) is type(adapter)
    torch.testing.assert_close(twin.logits(x), adapter.logits(x))
    with torch.no_grad():
        for p in twin.model.parameters():
            p.add_(1.0)
    for k, v in adapter.model.state_dict().items():
        assert torch.equal(v, original[k]), f"{k} changed through the clone"
    a, b = adapter.clone(reinit=True, seed=7), adapter.clone(reinit=True, seed=7)
    state = torch.get_rng_state()
    c = adapter.clone(reinit=True, seed=8)
    assert torch.equal(torch.get_rng_state(), state), "a seeded reinit leaves the global RNG as it was"
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    differs = [k for k, v in a.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, original[k])]
    assert differs, "reinit must change the weights"
    assert not torch.equal(a.logits(x), c.logits(x))


def test_to_never_moves_the_shared_model(case):
    adapter, x, _, _ = case
    same = adapter.to("cpu")
    assert isinstance(same, ModelAdapter) and same is not adapter and same.model is adapter.model
    moved = adapter.to("meta")
    assert moved.device.type == "meta" and moved.model is not adapter.model
    assert adapter.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in adapter.model.parameters())


# ---- kind-specific behaviour ------------------------------------------------------------------
def test_wrap_picks_the_adapter_class(hf_dirs):
    assert type(wrap(tiny_mlp(), name="m")) is ModuleAdapter
    hf = load_hf(hf_dirs / "gpt2")
    assert type(hf) is HFAdapter
    assert type(wrap(hf.model, name="again", kind="causal_lm")) is HFAdapter


def test_default_layers_and_cam_layer():
    assert wrap(tiny_cnn(), name="c").default_layers() == ["0", "1", "3", "7"]
    resnet = wrap(TinyResNet(), name="r")
    assert resnet.default_layers() == ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "fc"]
    assert resnet.cam_layer == "layer2.0.conv2"
    assert wrap(tiny_cnn(), name="c").cam_layer == "3"
    assert wrap(tiny_mlp(), name="m").cam_layer is None
    assert wrap(TinyCausalLM(), name="lm", kind="causal_lm").default_layers() == ["blocks.0", "blocks.1"]
    chosen = wrap(TinyResNet(), name="r", layers=["layer1", "fc"], cam_layer="layer1.1.conv1")
    assert chosen.default_layers() == ["layer1", "fc"] and chosen.cam_layer == "layer1.1.conv1"
    model = TinyResNet()
    model.cam_layer = "layer1.0.conv1"
    assert wrap(model, name="r").cam_layer == "layer1.0.conv1"
    model.cam_layer = ""  # declared empty: fall back to the last Conv2d
    assert wrap(model, name="r").cam_layer == "layer2.0.conv2"
    model.cam_layer = "layer9"
    with pytest.raises(ValueError, match="layer9"):
        wrap(model, name="r").cam_layer


def test_hf_default_layers_are_the_blocks(hf_dirs):
    assert load_hf(hf_dirs / "llama").default_layers() == [
        "model.embed_tokens",
        "model.layers.0",
        "model.layers.1",
        "model.norm",
    ]
    assert load_hf(hf_dirs / "gpt2").default_layers() == [
        "transformer.wte",
        "transformer.wpe",
        "transformer.h.0",
        "transformer.h.1",
        "transformer.ln_f",
    ]


def test_output_size_is_probed_for_a_flattening_cnn():
    model = tiny_cnn(num_classes=9)  # Linear(96, 9) after Flatten accepts only 8x8 inputs
    adapter = wrap(model, name="c")
    assert adapter.output_size == 9
    assert wrap(tiny_cnn(), name="c", output_size=5).output_size == 5
    assert wrap(TinyCausalLM(vocab=13), name="lm", kind="causal_lm").output_size == 13


def test_output_size_unknown_asks_for_it():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, a, b):
            return self.fc(a + b)

    with pytest.raises(ValueError, match="output_size="):
        wrap(TwoInputs(), name="two").output_size


def test_causal_lm_logits_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"\[B, L, V\]"):
        wrap(tiny_mlp(), name="not an lm", kind="causal_lm", example_input=torch.zeros(1, 7)).output_size


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(kind="regressor"), "'kind'"),
        (dict(name=""), "'name'"),
        (dict(layers=["nope"]), "'layers'"),
        (dict(cam_layer="fc9"), "'layers'"),
        (dict(output_size=0), "'output_size'"),
    ],
)
def test_wrap_rejects_bad_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        wrap(TinyResNet(), **{"name": "r", **bad})


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="'inputs'"):
        wrap(tiny_mlp(), name="m").logits([[0.0] * 7])


def test_hf_inputs_take_a_dict_with_attention_mask(hf_dirs):
    adapter = load_hf(hf_dirs / "llama")
    ids = torch.randint(3, 23, (2, L))
    mask = torch.ones(2, L, dtype=torch.long)
    torch.testing.assert_close(adapter.logits({"input_ids": ids, "attention_mask": mask}), adapter.logits(ids))
    mask[1, :2] = 0  # left padding changes the second row only
    padded = adapter.logits({"input_ids": ids, "attention_mask": mask})
    torch.testing.assert_close(padded[0], adapter.logits(ids)[0])
    with pytest.raises(ValueError, match="input_ids"):
        adapter.logits(torch.randn(2, L))
    with pytest.raises(ValueError, match="input_ids"):
        adapter.logits({"attention_mask": mask})
    with pytest.raises(ValueError, match=r"token ids in \[0, 22\]. Got values from 0 to 23"):
        adapter.logits(torch.tensor([[0, 23]]))


def test_latency_validates_and_measures():
    adapter = wrap(tiny_mlp(), name="m")
    assert 0 < adapter.latency(torch.randn(4, 7), repeats=3) < 5
    with pytest.raises(ValueError, match="'repeats'"):
        adapter.latency(torch.randn(4, 7), repeats=0)


def test_unused_layer_is_reported():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.spare = nn.Linear(3, 2), nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match="'spare' of u produced no tensor"):
        wrap(Unused(), name="u").capture(torch.randn(2, 3), ["spare"])
