"""The sample teachers and students: small CNNs for the image datasets and small decoder-only
transformers for tinylang. Plain ``nn.Module``s with the class attributes the adapters read:

- ``feature_layers``: submodule names whose outputs are compared (CKA, feature losses);
- ``cam_layer``: the last convolutional stage (Grad-CAM), or None for transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class _ConvStage(nn.Sequential):
    """3×3 convolution (same padding), batch norm (Ioffe & Szegedy 2015, arXiv 1502.03167), ReLU,
    then 2×2 max-pooling when ``pool``."""

    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """Conv stages ``conv1..convK``, global average pooling, and a linear ``head``.

    channels: output channels of each stage; pools: whether each stage ends with 2×2 max-pooling.
    """

    feature_layers: tuple[str, ...] = ()
    cam_layer: str = ""

    def __init__(self, in_channels: int, channels: tuple[int, ...], pools: tuple[bool, ...], num_classes: int) -> None:
        super().__init__()
        c_in = in_channels
        for i, (c, pool) in enumerate(zip(channels, pools), start=1):
            self.add_module(f"conv{i}", _ConvStage(c_in, c, pool))
            c_in = c
        self.head = nn.Linear(c_in, num_classes)
        self._stages = len(channels)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, C_in, H, W]
        for i in range(1, self._stages + 1):
            x = getattr(self, f"conv{i}")(x)  # [B, C_i, H_i, W_i]
        return self.head(x.mean(dim=(2, 3)))  # [B, num_classes]


class DigitsTeacher(SmallCNN):
    """8×8 grey digits: 16-32-64 channels (about 24k parameters)."""

    feature_layers = ("conv1", "conv2", "conv3")
    cam_layer = "conv3"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(1, (16, 32, 64), (False, True, False), num_classes)


class DigitsStudent(SmallCNN):
    """8×8 grey digits: 12-24 channels (about 2.9k parameters, an eighth of the teacher). Narrower
    students (8-16 channels) were too small to use the teacher's soft labels: KD left them below
    their baseline at every temperature tried."""

    feature_layers = ("conv1", "conv2")
    cam_layer = "conv2"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(1, (12, 24), (True, False), num_classes)


class ShapesTeacher(SmallCNN):
    """32×32 colour shapes: 16-32-48-64 channels (about 47k parameters)."""

    feature_layers = ("conv1", "conv2", "conv3", "conv4")
    cam_layer = "conv4"

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__(3, (16, 32, 48, 64), (True, True, False, False), num_classes)


class ShapesStudent(SmallCNN):
    """32×32 colour shapes: 8-16 channels (about 1.5k parameters)."""

    feature_layers = ("conv1", "conv2")
    cam_layer = "conv2"

    def __init__(self, num_classes: int = 8) -> None:
        super().__init__(3, (8, 16), (True, True), num_classes)


@dataclass(frozen=True)
class CNNSpec:
    """One SmallCNN size: input channels, output channels per stage, 2×2 max-pooling per stage."""

    in_channels: int
    channels: tuple[int, ...]
    pools: tuple[bool, ...]


class LadderCNN(SmallCNN):
    """A SmallCNN of any size whose every stage is a feature layer and whose last stage is the
    Grad-CAM layer: the rungs of a pair's student ladder (``LADDERS``)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], pools: tuple[bool, ...], num_classes: int) -> None:
        super().__init__(in_channels, tuple(channels), tuple(pools), num_classes)
        self.feature_layers = tuple(f"conv{i}" for i in range(1, len(channels) + 1))
        self.cam_layer = f"conv{len(channels)}"


# Student ladders (teacher-assistant sizes, methods/13 §13.2): per pair, CNN sizes strictly between
# the student's and the teacher's parameter counts, largest first, growing in width and depth.
# digits: teacher 24,058 > 19,258 > 10,078 > 5,178 > student 3,022 parameters;
# shapes: teacher 47,352 > 19,448 > 10,228 > 6,352 > student 1,552 parameters.
LADDERS: dict[str, tuple[CNNSpec, ...]] = {
    "digits": (
        CNNSpec(1, (16, 32, 48), (False, True, False)),
        CNNSpec(1, (12, 24, 32), (True, False, False)),
        CNNSpec(1, (16, 32), (True, False)),
    ),
    "shapes": (
        CNNSpec(3, (16, 32, 48), (True, True, False)),
        CNNSpec(3, (12, 24, 32), (True, True, False)),
        CNNSpec(3, (8, 16, 32), (True, True, False)),
    ),
}


def ladder_model(spec: CNNSpec, num_classes: int) -> LadderCNN:
    """The ladder CNN of one spec (initialised by the global torch RNG: seed it first)."""
    return LadderCNN(spec.in_channels, spec.channels, spec.pools, num_classes)


@dataclass
class TransformerConfig:
    vocab_size: int = 38  # tokens (tinylang)
    seq_len: int = 64  # longest input (learned positions)
    d_model: int = 64  # residual width
    n_heads: int = 4  # attention heads per layer
    n_layers: int = 2  # blocks
    d_mlp: int = 256  # hidden width of each block's MLP


class _Attention(nn.Module):
    """Causal multi-head self-attention that also returns its weights."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        mask = torch.tril(torch.ones(cfg.seq_len, cfg.seq_len, dtype=torch.bool))
        self.register_buffer("causal", mask, persistent=False)  # [L, L]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # x: [B, L, D]
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # [B, L, D] each
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
        scores = q @ k.transpose(-2, -1) / math.sqrt(D // self.n_heads)  # [B, H, L, L]
        scores = scores.masked_fill(~self.causal[:L, :L], float("-inf"))
        att = scores.softmax(dim=-1)  # [B, H, L, L]
        y = (att @ v).transpose(1, 2).reshape(B, L, D)  # [B, L, D]
        return self.out(y), att

    def forward_cached(
        self, x: Tensor, past: tuple[Tensor, Tensor] | None, key_mask: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Incremental attention: x [B, L, D] are the newest L positions; past = (k, v) [B, H, S, Dh]
        of the earlier ones (or None); key_mask [B, S + L] is 1 on keys that may be attended (0 on
        padding). Returns the output [B, L, D] and the extended cache (k, v) [B, H, S + L, Dh]."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # [B, L, D] each
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # [B, H, L, Dh]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # [B, H, S + L, Dh]
        S = k.shape[2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(D // self.n_heads)  # [B, H, L, S]
        causal = torch.ones(L, S, dtype=torch.bool, device=x.device).tril(S - L)  # query i sees keys <= S - L + i
        allowed = causal[None, None] & key_mask[:, None, None, :].bool()  # [B, 1, L, S]
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.nan_to_num(scores.softmax(dim=-1))  # rows of padding queries see nothing: zeros
        y = (att @ v).transpose(1, 2).reshape(B, L, D)  # [B, L, D]
        return self.out(y), (k, v)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_mlp), nn.GELU(), nn.Linear(cfg.d_mlp, cfg.d_model))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # x: [B, L, D]
        a, att = self.attn(self.ln1(x))
        x = x + a
        return x + self.mlp(self.ln2(x)), att  # [B, L, D], [B, H, L, L]

    def forward_cached(
        self, x: Tensor, past: tuple[Tensor, Tensor] | None, key_mask: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, cache = self.attn.forward_cached(self.ln1(x), past, key_mask)
        x = x + a
        return x + self.mlp(self.ln2(x)), cache  # [B, L, D], (k, v) [B, H, S + L, Dh]


class TinyTransformer(nn.Module):
    """A small decoder-only transformer (GPT-2 layout, Radford et al. 2019) with learned positions.

    forward(ids [B, L]) -> logits [B, L, V]; forward_with_attentions(ids) -> (logits, per-layer
    attention weights [B, H, L, L]). The outputs of ``blocks.i`` are the residual stream [B, L, D].
    """

    feature_layers: tuple[str, ...] = ()  # subclasses name their blocks: "blocks.0", ...
    cam_layer = None

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward_with_attentions(self, ids: Tensor) -> tuple[Tensor, list[Tensor]]:  # ids: [B, L]
        L = ids.shape[1]
        if L > self.cfg.seq_len:
            raise ValueError(
                f"The 'ids' argument of TinyTransformer must have at most {self.cfg.seq_len} positions. "
                f"Got {L}: cut the input to the model's context length."
            )
        x = self.tok(ids) + self.pos(torch.arange(L, device=ids.device))  # [B, L, D]
        attentions = []
        for block in self.blocks:
            x, att = block(x)
            attentions.append(att)
        return self.unembed(self.ln_f(x)), attentions  # [B, L, V], n_layers × [B, H, L, L]

    def forward(self, ids: Tensor) -> Tensor:
        return self.forward_with_attentions(ids)[0]

    @property
    def context_length(self) -> int:
        """The longest input (learned positions)."""
        return self.cfg.seq_len

    def forward_cached(
        self, ids: Tensor, positions: Tensor, key_mask: Tensor, past: list[tuple[Tensor, Tensor]] | None = None
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """One incremental step with a key/value cache (kdcore.generation uses it).

        ids [B, L]: the newest L tokens; positions [B, L]: their position ids (left-padded rows
        count from their first real token); key_mask [B, S + L]: 1 on real tokens among all S + L
        positions so far; past: per-layer (k, v) [B, H, S, Dh] or None. Returns logits [B, L, V]
        and the extended cache. On unpadded rows this equals forward() on the whole sequence.
        """
        if int(positions.max()) >= self.cfg.seq_len:
            raise ValueError(
                f"The 'positions' argument of TinyTransformer.forward_cached must be < {self.cfg.seq_len} (the "
                f"model's context). Got {int(positions.max())}: generate fewer tokens or shorten the prompt."
            )
        x = self.tok(ids) + self.pos(positions.clamp(min=0))  # [B, L, D]
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block.forward_cached(x, None if past is None else past[i], key_mask)
            cache.append(kv)
        return self.unembed(self.ln_f(x)), cache  # [B, L, V], n_layers × (k, v)


class TinyLangTeacher(TinyTransformer):
    """2 layers, 4 heads, width 64: can compose a previous-token head with an induction head."""

    feature_layers = ("blocks.0", "blocks.1")

    def __init__(self, vocab_size: int = 38) -> None:
        super().__init__(TransformerConfig(vocab_size=vocab_size, d_model=64, n_heads=4, n_layers=2, d_mlp=256))


class TinyLangStudent(TinyTransformer):
    """1 layer, 2 heads, width 32: a single attention layer cannot form induction heads."""

    feature_layers = ("blocks.0",)

    def __init__(self, vocab_size: int = 38) -> None:
        super().__init__(TransformerConfig(vocab_size=vocab_size, d_model=32, n_heads=2, n_layers=1, d_mlp=128))
