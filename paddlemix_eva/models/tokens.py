"""Per-sample token gathers and scatters ([B, N, C] tokens, [B, K] indices): MAE's masking and un-shuffling,
Evo-ViT's selection and write-back.

Tokens move with flat row indices (b * N + i into a [B * N, C] view), which is one gather / scatter kernel
instead of `take_along_axis` over an index expanded to [B, K, C]. Batch sizes are read with `paddle.shape`, so
exported programs keep a dynamic batch.
"""
from __future__ import annotations

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
