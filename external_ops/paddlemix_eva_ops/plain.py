"""The plain Paddle expressions the fused CPU ops replace: their fallbacks, and the references the tests and the
benchmark compare against. The RoPE ones are `paddlemix_eva.layers.rope.apply_rope_elementwise` applied to the q
and k slots (repeated here so this package does not import the library it serves)."""
from __future__ import annotations

from typing import Optional, Tuple

import paddle
import paddle.nn.functional as F

__all__ = ["plain_linear", "plain_swiglu", "plain_softmax", "rotate_pairs", "plain_rope", "plain_rope_qkv",
           "plain_rope_qkv_split"]


def plain_linear(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                 residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
    out = F.linear(x, weight, bias)
    return out if residual is None else out + residual


def plain_swiglu(h: paddle.Tensor) -> paddle.Tensor:
    gate, value = paddle.split(h, 2, axis=-1)
    return F.silu(gate) * value


def plain_softmax(x: paddle.Tensor) -> paddle.Tensor:
    return F.softmax(x, axis=-1)


def rotate_pairs(x: paddle.Tensor) -> paddle.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)"""
    pairs = x.reshape(x.shape[:-1] + [x.shape[-1] // 2, 2])
    return paddle.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)


def plain_rope(x: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> paddle.Tensor:
    """x * cos + rotate_pairs(x) * sin, the tables broadcast against x."""
    return x * cos.astype(x.dtype) + rotate_pairs(x) * sin.astype(x.dtype)


def _rotated_slots(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor):
    q, k, v = paddle.unbind(qkv, axis=2)  # each [B, N, heads, d]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [N, 1, d]: broadcast over the heads
    return plain_rope(q, cos, sin), plain_rope(k, cos, sin), v


def plain_rope_qkv(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> paddle.Tensor:
    """Packed qkv [B, N, 3, heads, d] with q and k rotated by [N, d] tables, v unchanged."""
    return paddle.stack(_rotated_slots(qkv, cos, sin), axis=2)


def plain_rope_qkv_split(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor,
                         q_scale: float = 1.0) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """(q * q_scale, k, v), rotated like `plain_rope_qkv` and transposed to [B, heads, N, d]."""
    q, k, v = (t.transpose([0, 2, 1, 3]) for t in _rotated_slots(qkv, cos, sin))
    return (q * q_scale if q_scale != 1.0 else q), k, v
