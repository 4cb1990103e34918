"""Stochastic depth."""
from __future__ import annotations

import paddle
import paddle.nn as nn


def drop_path(x: paddle.Tensor, drop_prob: float, training: bool) -> paddle.Tensor:
    """Stochastic depth: drop the residual branch per sample and rescale the survivors."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    mask = paddle.floor(keep_prob + paddle.rand(shape, dtype="float32")).astype(x.dtype)
    return x / keep_prob * mask


class DropPath(nn.Layer):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
