"""Multiply-accumulate (MAC) counting over a real forward pass.

Hooks see the shapes each layer actually receives, so masked encoders, token pruning and other input sizes are
counted as they run. Counted: every `nn.Linear` and `nn.Conv2D`, and each self-attention by its q/k/v
projections plus its two N x N products (2 * B * H * N^2 * d). Not counted: norms, softmax, activations, RoPE
rotations and other elementwise work. That is the convention of the GMACs in the EVA-02 tables (fvcore /
mmengine style): EVA-02 Ti at 336 px counts 4.66 G against the published 4.68.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers import Attention, switches

logger = logging.getLogger(__name__)

__all__ = ["MACCounter", "count_macs", "register_attention_products"]

#: attention layers other than `layers.Attention`, mapped to fn(layer, inputs, output) -> MACs of their two
#: attention products (their projections are `nn.Linear`s, which the Linear hooks count)
_ATTENTION_PRODUCTS: Dict[type, Callable] = {}


def register_attention_products(layer_class: type, macs: Callable) -> None:
    """Count the q k^T and attention x v products of `layer_class` (e.g. LeViT's attention) as
    `attention_core`: `macs(layer, inputs, output)` returns them for one call."""
    _ATTENTION_PRODUCTS[layer_class] = macs


class MACCounter:
    """`with MACCounter(model) as counter: model(x)`; then `counter.total` and `counter.by_kind`."""

    def __init__(self, model: nn.Layer):
        self.model = model
        self.by_kind: Dict[str, int] = {"linear": 0, "conv": 0, "attention_qkv": 0, "attention_core": 0}
        self._handles: List = []

    @property
    def total(self) -> int:
        return int(sum(self.by_kind.values()))

    def __enter__(self) -> "MACCounter":
        # Counted through the modules' own calls: the fused CPU kernels bypass some of them (packed SwiGLU, GEMMs
        # with the residual), so they are off while counting (the MACs are the same either way).
        self._fused = switches.FUSED_CPU_OPS.overridden(False)
        self._fused.__enter__()
        # The packed attention path multiplies by the concatenated q/k/v weights without calling the three
        # Linears, so the attention hook counts them and their own hooks are left out (never counted twice).
        counted_by_attention = set()
        for layer in self.model.sublayers(include_self=True):
            if isinstance(layer, Attention):
                counted_by_attention.update(id(p) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
                self._handles.append(layer.register_forward_post_hook(self._attention_hook))
        for layer in self.model.sublayers(include_self=True):
            if isinstance(layer, nn.Linear) and id(layer) not in counted_by_attention:
                self._handles.append(layer.register_forward_post_hook(self._linear_hook))
            elif isinstance(layer, nn.Conv2D):
                self._handles.append(layer.register_forward_post_hook(self._conv_hook))
            elif type(layer) in _ATTENTION_PRODUCTS:
                self._handles.append(layer.register_forward_post_hook(self._attention_products_hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._fused.__exit__(*exc)

    def _linear_hook(self, layer: nn.Linear, inputs, output) -> None:
        rows = int(np.prod(inputs[0].shape[:-1]))
        in_features, out_features = layer.weight.shape
        self.by_kind["linear"] += rows * int(in_features) * int(out_features)

    def _conv_hook(self, layer: nn.Conv2D, inputs, output) -> None:
        out_channels, in_per_group, kh, kw = layer.weight.shape
        per_output = int(in_per_group) * int(kh) * int(kw)
        self.by_kind["conv"] += int(np.prod(output.shape)) * per_output

    def _attention_products_hook(self, layer: nn.Layer, inputs, output) -> None:
        self.by_kind["attention_core"] += int(_ATTENTION_PRODUCTS[type(layer)](layer, inputs, output))

    def _attention_hook(self, layer: Attention, inputs, output) -> None:
        batch, tokens, dim = (int(s) for s in inputs[0].shape)
        inner = layer.num_heads * layer.head_dim
        self.by_kind["attention_qkv"] += batch * tokens * int(dim) * 3 * inner
        self.by_kind["attention_core"] += 2 * batch * layer.num_heads * tokens * tokens * layer.head_dim


def count_macs(
    model: nn.Layer,
    image_size: int,
    forward: Optional[Callable[[paddle.Tensor], object]] = None,
    in_chans: int = 3,
    batch_size: int = 1,
) -> MACCounter:
    """MACs of one forward of `model` on a [batch_size, in_chans, image_size, image_size] input.

    `forward(image)` defaults to `model(image)`; pass e.g. `lambda x: clip.encode_image(x)` to count one path of
    a multi-input model. The returned counter holds the total and the split by kind.
    """
    was_training = model.training
    model.eval()
    image = paddle.zeros([batch_size, in_chans, image_size, image_size], dtype="float32")
    try:
        with paddle.no_grad(), MACCounter(model) as counter:
            (forward or model)(image)
    finally:
        if was_training:
            model.train()
    logger.debug("MACs of %s at %d px: %s", type(model).__name__, image_size, counter.by_kind)
    return counter
