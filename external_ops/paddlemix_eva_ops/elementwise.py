"""Fused CPU SwiGLU and RoPE ops (float32, eager), one multi-threaded SIMD pass per direction.

    swiglu(h)                      h [..., 2H] -> silu(h[..., :H]) * h[..., H:]   (the gate is the first half)
    softmax(x)                     softmax over the last axis (attention probabilities)
    rope_qkv(qkv, cos, sin)        packed qkv [B, N, 3, heads, d]: q and k rotated (EVA-02's interleaved pairs,
                                   `paddlemix_eva.layers.rope.apply_rope_elementwise`), v unchanged
    rope_qkv_split(qkv, cos, sin, q_scale=1.0)
                                   the same rotation written as q * q_scale, k, v, each [B, heads, N, d]: the
                                   layout matmul attention consumes, without three transposes

Tables cos / sin are [N, d] constants (row 0, the cls token: cos 1, sin 0). Inputs the kernels do not serve
(static graphs, GPU tensors, dtypes other than float32, AMP, tables that require grad, the switch off) get the
plain expressions of `paddlemix_eva_ops.plain`; strided inputs are made contiguous first.
"""
from __future__ import annotations

from typing import Optional, Tuple

import paddle

from paddlemix_eva_ops_lib import fused_rope_qkv, fused_rope_qkv_split, fused_softmax, fused_swiglu

from ._eager import dense, eager_cpu_float32, report_fallback, where
from .plain import plain_rope_qkv, plain_rope_qkv_split, plain_softmax, plain_swiglu
from .switch import resolve

__all__ = ["swiglu", "supports_swiglu", "softmax", "supports_softmax", "rope_qkv", "rope_qkv_split",
           "supports_rope_qkv"]


def supports_swiglu(h: paddle.Tensor) -> bool:
    """Whether `swiglu` would run the fused op on h (ignoring the on/off switch)."""
    return eager_cpu_float32(h) and h.ndim >= 1 and h.shape[-1] % 2 == 0


@paddle.jit.not_to_static  # traced programs get the plain expression's ops, not a converted copy of this
def swiglu(h: paddle.Tensor, *, use_fused: Optional[bool] = None) -> paddle.Tensor:
    """silu(gate) * value for h = [gate, value] on the last axis; differentiable in h."""
    if resolve(use_fused) and supports_swiglu(h):
        return fused_swiglu(dense(h))
    if resolve(use_fused) and not eager_cpu_float32(h):
        report_fallback("fused swiglu", where(h), "using F.silu(a) * b")
    return plain_swiglu(h)


def supports_softmax(x: paddle.Tensor) -> bool:
    """Whether `softmax` would run the fused op on x (ignoring the on/off switch)."""
    return eager_cpu_float32(x) and x.ndim >= 1


@paddle.jit.not_to_static  # traced programs get the plain expression's ops, not a converted copy of this
def softmax(x: paddle.Tensor, *, use_fused: Optional[bool] = None) -> paddle.Tensor:
    """Softmax over the last axis; differentiable in x."""
    if resolve(use_fused) and supports_softmax(x):
        return fused_softmax(dense(x))
    if resolve(use_fused) and not eager_cpu_float32(x):
        report_fallback("fused softmax", where(x), "using F.softmax")
    return plain_softmax(x)


def _tables_fit(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> bool:
    if qkv.ndim != 5 or qkv.shape[2] != 3 or qkv.shape[4] % 2:
        return False
    table = [qkv.shape[1], qkv.shape[4]]
    return list(cos.shape) == table and list(sin.shape) == table and cos.stop_gradient and sin.stop_gradient


def supports_rope_qkv(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> bool:
    """Whether `rope_qkv` / `rope_qkv_split` would run the fused op (ignoring the on/off switch): eager float32
    CPU qkv [B, N, 3, heads, d] with even d, and constant [N, d] CPU tables (any float dtype: cast to float32)."""
    if not eager_cpu_float32(qkv) or not _tables_fit(qkv, cos, sin):
        return False
    return all(t.place.is_cpu_place() and paddle.is_floating_point(t) for t in (cos, sin))


def _table(t: paddle.Tensor) -> paddle.Tensor:
    return dense(t if t.dtype == paddle.float32 else t.astype(paddle.float32))


@paddle.jit.not_to_static  # traced programs get the plain expression's ops, not a converted copy of this
def rope_qkv(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor, *,
             use_fused: Optional[bool] = None) -> paddle.Tensor:
    """Packed qkv with q and k rotated, same layout; differentiable in qkv."""
    if resolve(use_fused) and supports_rope_qkv(qkv, cos, sin):
        return fused_rope_qkv(dense(qkv), _table(cos), _table(sin))
    if resolve(use_fused) and not eager_cpu_float32(qkv):
        report_fallback("fused rope_qkv", where(qkv), "using the elementwise RoPE")
    return plain_rope_qkv(qkv, cos, sin)


@paddle.jit.not_to_static  # traced programs get the plain expression's ops, not a converted copy of this
def rope_qkv_split(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor, q_scale: float = 1.0, *,
                   use_fused: Optional[bool] = None) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """(q * q_scale, k, v) as [B, heads, N, d] tensors, q and k rotated; differentiable in qkv."""
    if resolve(use_fused) and supports_rope_qkv(qkv, cos, sin):
        q, k, v = fused_rope_qkv_split(dense(qkv), _table(cos), _table(sin), float(q_scale))
        return q, k, v
    if resolve(use_fused) and not eager_cpu_float32(qkv):
        report_fallback("fused rope_qkv_split", where(qkv), "using the elementwise RoPE and transposes")
    return plain_rope_qkv_split(qkv, cos, sin, q_scale)
