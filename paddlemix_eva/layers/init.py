"""Parameter initialisers of the upstream recipes."""
from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn as nn


def init_trunc_normal(tensor: paddle.Tensor, std: float = 0.02, bound: float = 2.0) -> None:
    """Truncated normal with absolute bounds [-bound, bound] (timm's default, i.e. a plain normal at std .02)."""
    nn.initializer.TruncatedNormal(mean=0.0, std=std, a=-bound, b=bound)(tensor)


def init_zeros(tensor: paddle.Tensor) -> None:
    nn.initializer.Constant(0.0)(tensor)


def init_ones(tensor: paddle.Tensor) -> None:
    nn.initializer.Constant(1.0)(tensor)


def init_xavier_uniform(weight: paddle.Tensor, fan_in: int, fan_out: int) -> None:
    """U(+-sqrt(6 / (fan_in + fan_out))) with the fans given (e.g. those of a fused layer the weight is part of)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    nn.initializer.Uniform(-limit, limit)(weight)


def init_xavier_uniform_flat(weight: paddle.Tensor) -> None:
    """Xavier-uniform on a conv weight viewed as [out, in*k*k] (fan_out = out), as upstream MIM init does."""
    init_xavier_uniform(weight, int(np.prod(weight.shape[1:])), weight.shape[0])


def init_torch_default(weight: paddle.Tensor, fan_in: int) -> None:
    """PyTorch's default Linear / Conv init of weight and bias (kaiming-uniform, a = sqrt(5)): U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.initializer.Uniform(-bound, bound)(weight)


def init_conv_torch_default(conv: nn.Layer) -> None:
    """PyTorch's default init of a conv's weight and bias (fan_in = in_channels x kernel area)."""
    fan_in = int(np.prod(conv.weight.shape[1:]))
    init_torch_default(conv.weight, fan_in)
    if conv.bias is not None:
        init_torch_default(conv.bias, fan_in)


def init_vit_layer(layer: nn.Layer, std: float = 0.02, xavier: bool = False) -> None:
    """Default init of one sub-layer: Linear trunc-normal (or xavier-normal) with zero bias, LayerNorm 1/0."""
    if isinstance(layer, nn.Linear):
        if xavier:
            nn.initializer.XavierNormal()(layer.weight)
        else:
            init_trunc_normal(layer.weight, std)
        if layer.bias is not None:
            init_zeros(layer.bias)
    elif isinstance(layer, nn.LayerNorm):
        if layer.weight is not None:
            init_ones(layer.weight)
        if layer.bias is not None:
            init_zeros(layer.bias)
