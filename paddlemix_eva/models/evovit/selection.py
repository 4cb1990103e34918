"""Token selection by global class attention, shared by both Evo variants (tokens move with `models.tokens`)."""
from __future__ import annotations

from typing import Union

import paddle


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
