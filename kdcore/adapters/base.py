"""`ModelAdapter`: one surface over every kind of model the workbench analyses (API.md).

An adapter wraps an ``nn.Module`` and answers, for any model kind: logits, named layers, features
at named layers (through `kdcore.hooks.capture_features`), attention weights where the model has
them, parameter count, latency and output size. Subclasses only say how to run the model
(`_prepare`, `_run`, `_run_attentions`).

Models cached by the app are shared by every session, so an adapter never mutates its model
outside a scoped context: `logits`, `capture`, `attentions` and `latency` run in eval mode and
restore every submodule's train/eval flag afterwards; `clone` and `to` return new adapters over
deep copies.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.adapters.heads import hidden_before_head, logit_transform_problem, output_head, run_until_head
from kdcore.hooks import capture_features, resolve_layers, strip_capture_hooks

KINDS = ("classifier", "causal_lm", "encoder")
_PROBE_SIDES = (8, 16, 28, 32, 64, 96, 224)  # image sides tried when a conv net's input size is unknown


@contextmanager
def eval_mode(model: nn.Module, *, no_grad: bool = False) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block; in ``finally`` restore what the block may change.

    Restored exactly, even when the block raises: each submodule's own train/eval flag (set per
    module, not with ``m.train()``, which would recurse), each parameter's ``requires_grad`` (attribution
    tools may toggle them) and the thread's autograd mode. ``no_grad=True`` also runs the block
    without autograd. Only flags that differ are written back, so a model already entirely in eval
    mode (the app's shared, cached models) is never written to. The project's one eval scope: the
    runner, the adapters and ``analyses.cams`` use it.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    grad_enabled = torch.is_grad_enabled()
    try:
        if any(training for _, training in modes):
            model.eval()
        if no_grad:
            torch.set_grad_enabled(False)
        yield model
    finally:
        torch.set_grad_enabled(grad_enabled)
        _restore(modes, grads)


def _restore(modes: list[tuple[nn.Module, bool]], grads: list[tuple[nn.Parameter, bool]]) -> None:
    """Write back the training flags and ``requires_grad`` flags that differ from the saved ones."""
    for m, training in modes:
        if m.training != training:
            m.training = training
    for p, flag in grads:
        if p.requires_grad != flag:
            p.requires_grad_(flag)


def _check_kind(kind: Any, where: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of {where} must be one of {KINDS}. Got {kind!r} instead.")
    return kind


def _unwrap_logits(output: Any) -> Tensor:
    """The logits of a forward output: a tensor, ``.logits``, ``["logits"]`` or a tuple's first item."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ValueError(
        f"The model returned {type(output).__name__}, from which no logits tensor could be read. "
        f"Return a tensor, a tuple whose first item is the logits, or an object with .logits."
    )


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_block_stack(module: nn.Module) -> bool:
    """A ModuleList, or a Sequential of children of one class: blocks (modules with children of their
    own, e.g. resnet stages) or at least two layers (transformer blocks)."""
    kids = list(module.children())
    if isinstance(module, nn.ModuleList):
        return len(kids) >= 1
    if not isinstance(module, nn.Sequential) or not kids or len({type(k) for k in kids}) != 1:
        return False
    return len(kids) >= 2 or len(list(kids[0].children())) > 0


def _pick_layers(module: nn.Module, prefix: str = "") -> list[str]:
    """Top-level blocks with parameters; stacks of blocks are listed block by block, and a model whose
    top level has fewer than three such children is looked into (``model.layers.0``, ``transformer.h.1``)."""
    kids = [(f"{prefix}{n}", m) for n, m in module.named_children() if _has_params(m)]
    if len(kids) < 3 and not _is_block_stack(module):
        inner = max(kids, key=lambda kv: sum(p.numel() for p in kv[1].parameters()), default=None)
        if inner is not None and len(list(inner[1].children())) > 0:
            return _pick_layers(inner[1], inner[0] + ".")
    names: list[str] = []
    for name, child in kids:
        if _is_block_stack(child):
            names.extend(f"{name}.{n}" for n, m in child.named_children() if _has_params(m))
        else:
            names.append(name)
    return names


class ModelAdapter:
    """One model behind the workbench's common surface.

    Args:
        model: the wrapped module. It is used as it is (never copied, moved or mutated).
        name: display name.
        kind: "classifier" (logits [B, C]), "causal_lm" (logits [B, L, V]) or "encoder" (a pooled
            embedding [B, H] as the logits).
        layers: default layers for feature comparisons; else the model's ``feature_layers``
            attribute; else a pick of top-level blocks.
        cam_layer: the layer Grad-CAM reads; else the model's ``cam_layer`` attribute; else the last
            Conv2d; else None.
        output_size: classes (classifier) or vocabulary size (causal LM) when it cannot be read
            from the model.
        example_input: an input the model accepts, used to measure the output size when needed.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        kind: str = "classifier",
        layers: Sequence[str] | None = None,
        cam_layer: str | None = None,
        output_size: int | None = None,
        example_input: Any = None,
    ) -> None:
        where = type(self).__name__
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"The 'model' parameter of {where} must be a torch.nn.Module. Got {type(model).__name__} instead."
            )
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"The 'name' parameter of {where} must be a non-empty string. Got {name!r} instead.")
        self.model = model
        self.name = name
        self.kind = _check_kind(kind, where)
        self._layers = list(resolve_layers(model, layers, where=where)) if layers is not None else None
        if cam_layer is not None:
            resolve_layers(model, [cam_layer], where=where)
        self._cam_layer = cam_layer
        if output_size is not None and (
            isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1
        ):
            raise ValueError(
                f"The 'output_size' parameter of {where} must be a positive integer. Got {output_size!r} instead."
            )
        self._output_size = output_size
        self._example_input = example_input

    # ---- how to run the model (overridden by subclasses) ---------------------------------------
    def _prepare(self, inputs: Any) -> Any:
        """Move inputs to the model's device (and floating inputs to its dtype)."""
        if isinstance(inputs, Tensor):
            dtype = self._float_dtype()
            if inputs.is_floating_point() and dtype is not None and inputs.dtype != dtype:
                return inputs.to(self.device, dtype)
            return inputs.to(self.device)
        if isinstance(inputs, Mapping):
            return {k: self._prepare(v) if isinstance(v, Tensor) else v for k, v in inputs.items()}
        raise ValueError(
            f"The 'inputs' parameter of {type(self).__name__} must be a torch.Tensor (or a dict of tensors). "
            f"Got {type(inputs).__name__} instead."
        )

    def _run(self, inputs: Any) -> Tensor:
        """Forward prepared inputs; return logits."""
        if isinstance(inputs, Mapping):
            return _unwrap_logits(self.model(**inputs))
        return _unwrap_logits(self.model(inputs))

    def _run_attentions(self, inputs: Any) -> list[Tensor] | None:
        """Per-layer attention weights [B, H, L, L], or None for a model without attention."""
        return None

    def _config_output_size(self) -> int | None:
        """The output size as the model declares it (attributes or config), if it does."""
        config = getattr(self.model, "config", None)
        if self.kind == "classifier":
            candidates = (getattr(self.model, "num_classes", None), getattr(config, "num_labels", None))
        else:
            candidates = (getattr(self.model, "vocab_size", None), getattr(config, "vocab_size", None))
        return next((int(c) for c in candidates if isinstance(c, int) and not isinstance(c, bool) and c > 0), None)

    # ---- the common surface --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the model's parameters (or buffers) live."""
        for p in self.model.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    def _float_dtype(self) -> torch.dtype | None:
        return next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None)

    def num_parameters(self) -> int:
        """Number of parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.model.parameters())

    def layer_names(self) -> list[str]:
        """Every named submodule that runs in a forward pass, in registration order (the names capture()
        accepts); ModuleList/ModuleDict containers, which are never called, are left out."""
        return [n for n, m in self.model.named_modules() if n and not isinstance(m, (nn.ModuleList, nn.ModuleDict))]

    def default_layers(self) -> list[str]:
        """Layers to compare by default (CKA): those given, the model's ``feature_layers``, or its top-level blocks."""
        if self._layers is not None:
            return list(self._layers)
        declared = getattr(self.model, "feature_layers", None)
        if declared:
            return list(resolve_layers(self.model, list(declared), where=f"{type(self.model).__name__}.feature_layers"))
        return _pick_layers(self.model)

    @property
    def cam_layer(self) -> str | None:
        """The layer Grad-CAM reads: given, the model's ``cam_layer`` attribute, the last Conv2d, or None."""
        if self._cam_layer is not None:
            return self._cam_layer
        declared = getattr(self.model, "cam_layer", None)
        if isinstance(declared, str) and declared:  # "" or None: not declared
            resolve_layers(self.model, [declared], where=f"{type(self.model).__name__}.cam_layer")
            return declared
        convs = [n for n, m in self.model.named_modules() if isinstance(m, nn.Conv2d)]
        return convs[-1] if convs else None

    def logits(self, inputs: Any) -> Tensor:
        """Logits [B, C] (classifier) or [B, L, V] (causal LM), without grad, in eval mode; on the model's device."""
        with torch.no_grad(), eval_mode(self.model):
            return self._run(self._prepare(inputs))

    def capture(self, inputs: Any, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Features at named layers (default_layers() when None): detached CPU copies, eval mode, no grad."""
        layers = self.default_layers() if layers is None else layers
        with torch.no_grad(), eval_mode(self.model), capture_features(self.model, layers, detach=True) as feats:
            self._run(self._prepare(inputs))
        return self._complete(feats, layers)

    def forward_features(self, inputs: Any, layers: Sequence[str] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """(logits, {layer: features}) with the autograd graph kept, for training losses.

        The model's train/eval mode and grad mode are the caller's: nothing is changed.
        """
        layers = self.default_layers() if layers is None else layers
        with capture_features(self.model, layers, detach=False) as feats:
            logits = self._run(self._prepare(inputs))
        return logits, self._complete(feats, layers)

    def _complete(self, feats: dict[str, Tensor], layers: Sequence[str]) -> dict[str, Tensor]:
        missing = [n for n in layers if n not in feats]
        if missing:
            raise ValueError(
                f"Layer {missing[0]!r} of {self.name} produced no tensor during the forward pass (it is "
                f"unused, or returns no tensor). Choose layers from default_layers() instead."
            )
        return {n: feats[n] for n in layers}

    def attentions(self, inputs: Any) -> list[Tensor] | None:
        """Attention weights per layer, each [B, H, L, L] (detached, CPU), or None if the model has none."""
        with torch.no_grad(), eval_mode(self.model):
            atts = self._run_attentions(self._prepare(inputs))
        if not atts:
            return None
        return [a.detach().float().cpu() for a in atts]

    @property
    def output_size(self) -> int:
        """Classes (classifier) or vocabulary size (causal LM), read from the model or measured once."""
        if self._output_size is None:
            self._output_size = self._measure_output_size()
        return self._output_size

    def _measure_output_size(self) -> int:
        if self._example_input is not None:
            return self._output_width(self.logits(self._example_input))
        declared = self._config_output_size()
        if declared is not None:
            return declared
        for probe in self._probe_inputs():
            try:
                logits = self.logits(probe)
            except Exception:  # a probe the model does not accept: try the next shape
                continue
            return self._output_width(logits)
        raise ValueError(
            f"Could not tell the output size of {self.name}: it declares none and did not accept a probe "
            f"input. Pass output_size= (or example_input=) to wrap()."
        )

    def _output_width(self, logits: Tensor) -> int:
        want = 3 if self.kind == "causal_lm" else 2
        if logits.dim() != want:
            raise ValueError(
                f"{self.name} is a {self.kind}, whose logits must have {want} dimensions "
                f"({'[B, C]' if want == 2 else '[B, L, V]'}). Got shape {tuple(logits.shape)}."
            )
        return int(logits.shape[-1])

    def _probe_inputs(self) -> Iterator[Tensor]:
        """Inputs shaped for the model's first layer with parameters."""
        first = next((m for m in self.model.modules() if _has_params(m) and not list(m.children())), None)
        if isinstance(first, nn.Embedding):
            yield torch.zeros(2, 4, dtype=torch.long)
        elif isinstance(first, nn.Linear):
            yield torch.zeros(2, first.in_features)
        elif isinstance(first, nn.Conv1d):
            for side in _PROBE_SIDES:
                yield torch.zeros(2, first.in_channels, side)
        elif isinstance(first, nn.Conv2d):
            for side in _PROBE_SIDES:
                yield torch.zeros(2, first.in_channels, side, side)

    def latency(self, inputs: Any, repeats: int = 20, warmup: int = 2) -> float:
        """Median seconds per forward of ``inputs`` (no grad, eval mode), after ``warmup`` untimed runs."""
        for arg, value, lo in (("repeats", repeats, 1), ("warmup", warmup, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"The '{arg}' parameter of latency must be an integer >= {lo}. Got {value!r} instead.")
        prepared = self._prepare(inputs)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        times = []
        with torch.no_grad(), eval_mode(self.model):
            for i in range(warmup + repeats):
                sync()
                start = time.perf_counter()
                self._run(prepared)
                sync()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
        return statistics.median(times)

    # ---- final hidden states and output head (kdcore.lm_chunked) ----------------------------------
    def hidden_head_problem(self) -> str | None:
        """Why ``hidden_and_head`` cannot serve this model (None when it can)."""
        if self.kind != "causal_lm":
            return f"{self.name} is a {self.kind}: hidden states and an output head are read from causal LMs only."
        if output_head(self.model) is None:
            return (
                f"{self.name} has no output head the workbench can find (get_output_embeddings(), or an "
                f"nn.Linear named lm_head/unembed/head/output); the full logits are used."
            )
        return logit_transform_problem(self.model)

    def hidden_and_head(self, inputs: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """(final hidden states [B, L, H], head weight [V, H], head bias [V] or None), logits never built.

        The graph is kept and the train/eval and grad modes are the caller's (as ``forward_features``).
        The head's input is captured by a pre-hook that stops the forward pass (``kdcore.adapters.heads``).
        Raises ValueError (``hidden_head_problem``) for a model whose logits are not head(hidden).
        """
        problem = self.hidden_head_problem()
        if problem is not None:
            raise ValueError(problem)
        head = output_head(self.model)
        assert head is not None  # hidden_head_problem said so
        prepared = self._prepare(inputs)
        with hidden_before_head(head) as seen:
            run_until_head(lambda: self._run(prepared))
        return seen["hidden"], head.weight, head.bias

    # ---- copies ---------------------------------------------------------------------------------
    def _with_model(self, model: nn.Module) -> ModelAdapter:
        twin = copy.copy(self)
        twin.model = model
        return twin

    def clone(self, reinit: bool = False, seed: int | None = None) -> ModelAdapter:
        """An independent adapter over a deep copy of the model.

        reinit: re-initialise the copy (``reset_parameters()`` on every submodule that has one),
            under ``torch.manual_seed(seed)`` when a seed is given (the global RNG is restored).
        """
        model = strip_capture_hooks(copy.deepcopy(self.model))
        if reinit:
            cuda = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
            with torch.random.fork_rng(devices=cuda) if seed is not None else nullcontext():
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.no_grad():
                    self._reinit(model)
        return self._with_model(model)

    def _reinit(self, model: nn.Module) -> None:
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()

    def to(self, device: str | torch.device) -> ModelAdapter:
        """A new adapter on ``device``; the model is copied when it lives elsewhere (never moved)."""
        device = torch.device(device)
        here = self.device
        if here.type == device.type and (device.index is None or here.index == device.index):
            return self._with_model(self.model)
        return self._with_model(strip_capture_hooks(copy.deepcopy(self.model)).to(device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}, parameters={self.num_parameters():,})"
