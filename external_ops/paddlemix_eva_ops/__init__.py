"""Custom ops of paddlemix-eva: FusedLayerNorm (CPU, CUDA) and the fused CPU linear / SwiGLU / RoPE functions.

Fused CPU ops (float32, eager; everything else falls back to the plain Paddle expression, see each module):

    linear(x, weight, bias=None, residual=None)   x @ weight + bias + residual: oneDNN GEMMs   (linear.py)
    swiglu(h)                                     silu(h[..., :H]) * h[..., H:]                  (elementwise.py)
    softmax(x)                                    softmax over the last axis
    rope_qkv(qkv, cos, sin)                       RoPE on q and k of packed qkv [B, N, 3, heads, d]
    rope_qkv_split(qkv, cos, sin, q_scale=1.0)    the same, written as q * q_scale, k, v [B, heads, N, d]

with `supports_linear / supports_swiglu / supports_softmax / supports_rope_qkv` predicates, `use_fused=` per call
and the process switch `set_fused_cpu_ops_enabled` (default: `PADDLEMIX_EVA_DISABLE_FUSED_CPU_OPS`, switch.py);
`onednn_info()` says which oneDNN the linear op found.

FusedLayerNorm: `paddle.nn.LayerNorm` whose forward and backward are one custom op each (C++ on CPU, CUDA).

    from paddlemix_eva_ops import FusedLayerNorm
    norm = FusedLayerNorm(768, epsilon=1e-6)      # same parameters and state-dict keys as paddle.nn.LayerNorm

The op runs eager float32 / bfloat16 / float64 inputs on CPU (and float16 / bfloat16 / float32 on GPU when
built with CUDA). Anything else (a device the op was not built for, static graphs such as `paddle.jit.save`
exports, which must stay loadable without this library) takes Paddle's own layer_norm, so a FusedLayerNorm is
never less general than the layer it replaces. float16 on CPU, which neither the op nor Paddle 3.3's CPU
layer_norm has a kernel for, is normalised in float32 and cast back (bfloat16 on CPU, also missing from Paddle's
CPU kernels, runs in the op). Strided (non-contiguous) inputs are made
contiguous first; the raw op `fused_layer_norm_op` refuses them.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddlemix_eva_ops_lib import fused_layer_norm as fused_layer_norm_op  # the compiled op (setup.py)

from .elementwise import (  # noqa: E402
    rope_qkv,
    rope_qkv_split,
    softmax,
    supports_rope_qkv,
    supports_softmax,
    supports_swiglu,
    swiglu,
)
from .linear import linear, supports_linear  # noqa: E402
from .onednn import OneDNNInfo, onednn_info  # noqa: E402
from .switch import DISABLE_FUSED_CPU_OPS_ENV, fused_cpu_ops_enabled, set_fused_cpu_ops_enabled  # noqa: E402

__all__ = [
    "FusedLayerNorm", "fused_layer_norm", "fused_layer_norm_op", "supports",
    "linear", "supports_linear", "swiglu", "supports_swiglu", "softmax", "supports_softmax",
    "rope_qkv", "rope_qkv_split", "supports_rope_qkv",
    "onednn_info", "OneDNNInfo", "fused_cpu_ops_enabled", "set_fused_cpu_ops_enabled", "DISABLE_FUSED_CPU_OPS_ENV",
]

logger = logging.getLogger(__name__)

_CPU_DTYPES = (paddle.float32, paddle.float64, paddle.bfloat16)
_GPU_DTYPES = (paddle.float32, paddle.float16, paddle.bfloat16)
_reported = set()


def _built_with_cuda() -> bool:
    return paddle.is_compiled_with_cuda()


def supports(x: paddle.Tensor) -> bool:
    """Whether the op has a kernel for this input (eager mode, device, dtype)."""
    if not paddle.in_dynamic_mode():
        return False
    place = x.place
    if place.is_cpu_place():
        return x.dtype in _CPU_DTYPES
    if place.is_gpu_place():
        return _built_with_cuda() and x.dtype in _GPU_DTYPES
    return False


def _cpu_float16(x: paddle.Tensor) -> bool:
    return paddle.in_dynamic_mode() and x.place.is_cpu_place() and x.dtype == paddle.float16


def _report_fallback(x: paddle.Tensor, how: str) -> None:
    # static-graph variables have no place (asking warns once per layer), so they are reported as one case
    where = "static graph" if not paddle.in_dynamic_mode() else f"{x.dtype} on {x.place}"
    if where not in _reported:
        _reported.add(where)
        logger.info("FusedLayerNorm: no fused kernel for %s; %s there", where, how)


def fused_layer_norm(
    x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor, epsilon: float = 1e-5
) -> paddle.Tensor:
    """LayerNorm of `x` over its last dimension (size = len(weight)), differentiable in all three inputs."""
    hidden = int(weight.shape[0])
    if x.ndim == 0 or int(x.shape[-1]) != hidden:
        raise ValueError(
            f"FusedLayerNorm(normalized_shape=[{hidden}]) got an input of shape {list(x.shape)}: its last "
            f"dimension must be {hidden}"
        )
    if not paddle.is_floating_point(x):
        raise TypeError(f"FusedLayerNorm needs a floating-point input, got {x.dtype}")
    if _cpu_float16(x):
        _report_fallback(x, "normalising in float32 and casting back")
        as32 = lambda t: t.astype(paddle.float32)  # noqa: E731
        return fused_layer_norm(as32(x), as32(weight), as32(bias), epsilon).astype(x.dtype)
    if not supports(x):
        _report_fallback(x, "using paddle's layer_norm")
        return F.layer_norm(x, [hidden], weight=weight, bias=bias, epsilon=epsilon)
    if not x.is_contiguous():
        x = x.contiguous()
    y, _, _ = fused_layer_norm_op(x, weight, bias, float(epsilon))
    return y


class FusedLayerNorm(nn.LayerNorm):
    """Drop-in `paddle.nn.LayerNorm` over the last dimension with the fused op's forward and backward."""

    def __init__(
        self,
        normalized_shape: Union[int, Sequence[int]],
        epsilon: float = 1e-5,
        weight_attr=None,
        bias_attr=None,
        name: Optional[str] = None,
    ):
        super().__init__(normalized_shape, epsilon=epsilon, weight_attr=weight_attr, bias_attr=bias_attr, name=name)
        if len(self._normalized_shape) != 1:
            raise ValueError(
                f"FusedLayerNorm normalises over the last dimension only; got normalized_shape="
                f"{list(self._normalized_shape)} (use paddle.nn.LayerNorm for several dimensions)"
            )
        if self.weight is None or self.bias is None:
            raise ValueError("FusedLayerNorm needs both weight and bias (weight_attr / bias_attr must not be False)")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return fused_layer_norm(x, self.weight, self.bias, self._epsilon)
