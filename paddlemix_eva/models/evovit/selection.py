"""Token selection by global class attention: the gathers and scatters both Evo variants share.

Tokens are moved with flat row indices (b * N + i into a [B * N, C] view), which is one gather / scatter kernel
instead of `take_along_axis` over an index expanded to [B, K, C]. Batch sizes are read with `paddle.shape`, so
exported programs keep a dynamic batch.
"""
from __future__ import annotations

from typing import Union

import paddle


def _flat_rows(index: paddle.Tensor, num_tokens: int) -> paddle.Tensor:
    """[B, K] token indices -> [B * K] row indices into the [B * N, C] view."""
    batch = paddle.shape(index)[0]
    offsets = paddle.arange(batch, dtype=index.dtype).unsqueeze(1) * num_tokens
    return (index + offsets).reshape([-1])


def gather_tokens(x: paddle.Tensor, index: paddle.Tensor) -> paddle.Tensor:
    """x [B, N, C], index [B, K] -> x[b, index[b, k]] as [B, K, C]."""
    channels = x.shape[-1]
    rows = paddle.gather(x.reshape([-1, channels]), _flat_rows(index, x.shape[1]))
    return rows.reshape([-1, index.shape[1], channels])


def scatter_tokens(x: paddle.Tensor, index: paddle.Tensor, values: paddle.Tensor) -> paddle.Tensor:
    """A copy of x [B, N, C] with x[b, index[b, k]] = values[b, k]; every other token is left as it is."""
    channels = x.shape[-1]
    flat = paddle.scatter(
        x.reshape([-1, channels]), _flat_rows(index, x.shape[1]), values.reshape([-1, channels]), overwrite=True
    )
    return flat.reshape([-1, x.shape[1], channels])


def top_indices(scores: paddle.Tensor, k: int) -> paddle.Tensor:
    """Indices [B, k] of the k highest scores per row, highest first."""
    return paddle.topk(scores, k, axis=1, largest=True, sorted=True)[1]


def with_cls_row(index: paddle.Tensor) -> paddle.Tensor:
    """Patch indices [B, K] -> token indices [B, 1 + K] of [cls, those patches] in a [cls, patches] sequence."""
    return paddle.concat([paddle.zeros_like(index[:, :1]), index + 1], axis=1)


def blend(old: paddle.Tensor, new: paddle.Tensor, tradeoff: Union[float, paddle.Tensor]) -> paddle.Tensor:
    """(1 - t) * old + t * new: the running global class attention."""
    if isinstance(tradeoff, float) and tradeoff == 1.0:
        return new
    return (1.0 - tradeoff) * old + tradeoff * new
