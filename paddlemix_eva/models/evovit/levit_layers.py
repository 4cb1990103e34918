"""LeViT building blocks (Graham et al., 2021) as Evo-LeViT uses them: BatchNorm'd convolutions and Linears,
Hardswish, attention with separate key and value widths, and stride-2 subsampling attention between stages.

Evo-LeViT drops LeViT's attention biases (positions come from absolute embeddings) and adds a cls token, so every
attention here also returns the cls query's attention over the patch keys, averaged over heads.
"""
from __future__ import annotations

from typing import Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddlemix_eva.layers import DropPath, init_ones, init_torch_default, init_trunc_normal, init_zeros
from paddlemix_eva.tasks.flops import register_attention_products
from paddlemix_eva.utils import compat


def _init_batch_norm(bn: nn.Layer, weight: float) -> None:
    (init_ones if weight == 1.0 else init_zeros)(bn.weight)
    init_zeros(bn.bias)


def _batch_norm_scale_shift(bn: nn.Layer) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm as the affine map x * scale + shift."""
    mean, variance, epsilon = compat.batch_norm_statistics(bn)
    scale = bn.weight / paddle.sqrt(variance + epsilon)
    return scale, bn.bias - mean * scale


class ConvNorm(nn.Layer):
    """Conv2D without bias, then BatchNorm2D (LeViT's `Conv2d_BN`; same sub-layer names `c`, `bn`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2, padding: int = 1):
        super().__init__()
        self.c = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)
        init_torch_default(self.c.weight, in_channels * kernel_size * kernel_size)
        _init_batch_norm(self.bn, 1.0)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.bn(self.c(x))

    @paddle.no_grad()
    def fused(self) -> nn.Conv2D:
        """One Conv2D with bias computing the eval-mode conv + BN."""
        scale, shift = _batch_norm_scale_shift(self.bn)
        conv = nn.Conv2D(**compat.conv2d_arguments(self.c))
        conv.weight.set_value(self.c.weight * scale.reshape([-1, 1, 1, 1]))
        conv.bias.set_value(shift)
        return conv


class LinearNorm(nn.Layer):
    """Linear without bias, then BatchNorm1D over all tokens of the batch (LeViT's `Linear_BN`: `c`, `bn`).
    `bn_weight` 0 makes a residual branch start as the identity."""

    def __init__(self, in_features: int, out_features: int, bn_weight: float = 1.0):
        super().__init__()
        self.c = nn.Linear(in_features, out_features, bias_attr=False)
        self.bn = nn.BatchNorm1D(out_features)
        init_torch_default(self.c.weight, in_features)
        _init_batch_norm(self.bn, bn_weight)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.c(x)
        return self.bn(y.reshape([-1, y.shape[-1]])).reshape(y.shape)

    @paddle.no_grad()
    def fused(self) -> nn.Linear:
        """One Linear with bias computing the eval-mode Linear + BN (weights [in, out])."""
        scale, shift = _batch_norm_scale_shift(self.bn)
        linear = nn.Linear(*self.c.weight.shape)
        linear.weight.set_value(self.c.weight * scale.unsqueeze(0))
        linear.bias.set_value(shift)
        return linear


class NormLinear(nn.Layer):
    """BatchNorm1D, then Linear (LeViT's `BN_Linear` classifier head: `bn`, `l`)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1D(in_features)
        self.l = nn.Linear(in_features, out_features)  # noqa: E741 - upstream's name, kept for the key layout
        _init_batch_norm(self.bn, 1.0)
        init_trunc_normal(self.l.weight, 0.02)
        init_zeros(self.l.bias)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.l(self.bn(x))

    @paddle.no_grad()
    def fused(self) -> nn.Linear:
        """One Linear computing the eval-mode BN + Linear."""
        scale, shift = _batch_norm_scale_shift(self.bn)
        linear = nn.Linear(*self.l.weight.shape)
        linear.weight.set_value(self.l.weight * scale.unsqueeze(1))
        linear.bias.set_value(self.l.bias + paddle.matmul(shift, self.l.weight))
        return linear


#: the BatchNorm pairs `fuse_batch_norms` folds
FUSABLE = (ConvNorm, LinearNorm, NormLinear)


def fuse_batch_norms(model: nn.Layer) -> int:
    """Replace every Conv+BN, Linear+BN and BN+Linear pair of `model` by one layer computing its eval-mode
    output (LeViT's inference fusion); returns how many were folded. The model must stay in eval mode after."""
    count = 0
    for parent in [model] + list(model.sublayers()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FUSABLE):
                parent.add_sublayer(name, child.fused())
                count += 1
    return count


class LeViTStem(nn.Layer):
    """Four 3x3 stride-2 ConvNorms (3 -> C/8 -> C/4 -> C/2 -> C) with Hardswish between: a 1/16 token grid."""

    def __init__(self, in_chans: int, width: int):
        super().__init__()
        widths = [in_chans, width // 8, width // 4, width // 2, width]
        self.convs = nn.LayerList([ConvNorm(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.act = nn.Hardswish()

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        """[B, C_in, H, W] -> tokens [B, (H/16) * (W/16), C] in raster order."""
        x = image
        for i, conv in enumerate(self.convs):
            x = conv(x if i == 0 else self.act(x))
        return x.flatten(2).transpose([0, 2, 1])


class LeViTMlp(nn.Layer):
    """LinearNorm C -> hidden, Hardswish, LinearNorm hidden -> C (its BN starts at 0)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = LinearNorm(dim, hidden)
        self.act = nn.Hardswish()
        self.fc2 = LinearNorm(hidden, dim, bn_weight=0.0)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TradeoffMixin:
    """A learnable blend weight t = sigmoid(theta) of the global class attention, theta starting at 0 (t = 0.5)."""

    def _build_tradeoff(self) -> None:
        self.learn_tradeoff = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))

    def tradeoff(self, learnable: bool):
        """sigmoid(theta) [1] when learnable (from the switch epoch on, and at inference), else the fixed 0.5."""
        return F.sigmoid(self.learn_tradeoff) if learnable else 0.5


def _attend(q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor, scale: float) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """q [B, H, M, d], k [B, H, N, d], v [B, H, N, e] -> (merged heads [B, M, H * e], cls row mean over heads
    [B, N - 1] of the query 0 over the patch keys)."""
    attn = F.softmax(paddle.matmul(q * scale, k, transpose_y=True), axis=-1)
    out = paddle.matmul(attn, v).transpose([0, 2, 1, 3])
    return out.reshape([0, 0, -1]), attn[:, :, 0, 1:].mean(axis=1)


class LeViTAttention(TradeoffMixin, nn.Layer):
    """Multi-head attention: one LinearNorm gives per head q, k (key_dim) and v (attn_ratio * key_dim); the
    merged heads go through Hardswish and a LinearNorm back to `dim` (BN starting at 0)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        self.qkv = LinearNorm(dim, num_heads * (2 * key_dim + self.value_dim))
        self.act = nn.Hardswish()
        self.proj = LinearNorm(num_heads * self.value_dim, dim, bn_weight=0.0)
        self._build_tradeoff()

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """x [B, N, dim] -> (branch output [B, N, dim], cls attention [B, N - 1])."""
        qkv = self.qkv(x).reshape([0, 0, self.num_heads, 2 * self.key_dim + self.value_dim]).transpose([0, 2, 1, 3])
        q, k, v = paddle.split(qkv, [self.key_dim, self.key_dim, self.value_dim], axis=-1)
        out, cls_attention = _attend(q, k, v, self.scale)
        return self.proj(self.act(out)), cls_attention


def subsample_grid(x: paddle.Tensor, side: int, stride: int = 2) -> paddle.Tensor:
    """Every `stride`-th row and column of a raster grid: [B, side * side, ...] -> [B, ceil(side / stride)^2, ...]."""
    grid = x.reshape([-1, side, side] + list(x.shape[2:]))[:, ::stride, ::stride]
    return grid.reshape([-1, grid.shape[1] * grid.shape[2]] + list(x.shape[2:]))


class LeViTSubsampleAttention(TradeoffMixin, nn.Layer):
    """Attention from a stride-2 subsampled grid (queries: cls and every other row / column) to all tokens; keys
    and values from all tokens, value width attn_ratio * key_dim, no residual. Its own position table `poss` is
    added to the input first."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, attn_ratio: float, side: int):
        super().__init__()
        self.num_heads, self.key_dim, self.side = num_heads, key_dim, side
        self.value_dim = int(attn_ratio * key_dim)
        self.scale = key_dim**-0.5
        zeros = nn.initializer.Constant(0.0)
        self.poss = self.create_parameter([1, side * side + 1, in_dim], default_initializer=zeros)
        init_trunc_normal(self.poss, 0.02)
        self.kv = LinearNorm(in_dim, num_heads * (key_dim + self.value_dim))
        self.q = LinearNorm(in_dim, num_heads * key_dim)
        self.act = nn.Hardswish()
        self.proj = LinearNorm(num_heads * self.value_dim, out_dim)
        self._build_tradeoff()

    @property
    def out_side(self) -> int:
        return (self.side - 1) // 2 + 1

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """x [B, 1 + side^2, in_dim] in raster order -> (tokens [B, 1 + out_side^2, out_dim], the cls query's
        attention over the input grid, head mean, subsampled to the output grid [B, out_side^2])."""
        x = x + self.poss.astype(x.dtype)
        kv = self.kv(x).reshape([0, 0, self.num_heads, self.key_dim + self.value_dim]).transpose([0, 2, 1, 3])
        k, v = paddle.split(kv, [self.key_dim, self.value_dim], axis=-1)
        queries = paddle.concat([x[:, :1], subsample_grid(x[:, 1:], self.side)], axis=1)
        q = self.q(queries).reshape([0, 0, self.num_heads, self.key_dim]).transpose([0, 2, 1, 3])
        out, cls_attention = _attend(q, k, v, self.scale)
        return self.proj(self.act(out)), subsample_grid(cls_attention.unsqueeze(-1), self.side).squeeze(-1)


class LeViTBlock(nn.Layer):
    """Attention residual then MLP residual, each with stochastic depth."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, mlp_ratio: float,
                 drop_path: float):
        super().__init__()
        self.attn = LeViTAttention(dim, key_dim, num_heads, attn_ratio)
        self.mlp = LeViTMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def _drop(self, branch: paddle.Tensor) -> paddle.Tensor:
        return self.drop_path(branch) if self.drop_path is not None else branch

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """x [B, N, C] -> (output, cls attention [B, N - 1])."""
        attn_out, cls_attention = self.attn(x)
        x = x + self._drop(attn_out)
        return x + self._drop(self.mlp(x)), cls_attention


class LeViTDownsample(nn.Layer):
    """Subsampling attention to the next stage's width and grid, then an MLP residual."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, attn_ratio: float, mlp_ratio: float, side: int,
                 drop_path: float):
        super().__init__()
        self.attn = LeViTSubsampleAttention(in_dim, out_dim, key_dim, in_dim // key_dim, attn_ratio, side)
        self.mlp = LeViTMlp(out_dim, int(out_dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        x, cls_attention = self.attn(x)
        mlp_out = self.mlp(x)
        return x + (self.drop_path(mlp_out) if self.drop_path is not None else mlp_out), cls_attention


def _attention_products(layer: LeViTAttention, inputs, output) -> int:
    """q k^T and attention x v for N tokens: B H N^2 (key_dim + value_dim)."""
    batch, tokens = int(inputs[0].shape[0]), int(inputs[0].shape[1])
    return batch * layer.num_heads * tokens * tokens * (layer.key_dim + layer.value_dim)


def _subsample_products(layer: LeViTSubsampleAttention, inputs, output) -> int:
    """M subsampled queries against N tokens: B H M N (key_dim + value_dim)."""
    batch, tokens = int(inputs[0].shape[0]), int(inputs[0].shape[1])
    queries = 1 + layer.out_side**2
    return batch * layer.num_heads * queries * tokens * (layer.key_dim + layer.value_dim)


register_attention_products(LeViTAttention, _attention_products)
register_attention_products(LeViTSubsampleAttention, _subsample_products)
