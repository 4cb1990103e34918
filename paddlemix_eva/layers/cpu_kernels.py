"""The fused CPU kernels of `external_ops` (oneDNN linear with bias and residual in the GEMM, SwiGLU, softmax,
RoPE written straight into the attention layout) as the blocks call them, with Paddle's plain expressions wherever
they do not run: the op library is not installed, the switch is off (`switches.FUSED_CPU_OPS`), or the inputs are
not eager float32 CPU tensors (static graphs, GPU, AMP, other dtypes). Every fused path equals its plain one to float32
rounding (tests/test_fused_cpu_ops.py, tests/test_layers.py)."""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Optional, Tuple

import paddle
import paddle.nn.functional as F

from paddlemix_eva.layers import switches

logger = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def _ops():
    """The op library, or None (logged once) when it is not built or does not load."""
    try:
        import paddlemix_eva_ops as ops  # type: ignore  # built from external_ops/ (`make ops`)
    except ImportError:
        logger.info("fused CPU ops: not installed (`make ops` builds them); plain Paddle kernels")
        return None
    except Exception as err:  # e.g. built against another Paddle
        logger.warning("fused CPU ops: failed to load (%s; rebuild with `make ops`); plain Paddle kernels", err)
        return None
    if not hasattr(ops, "linear"):  # an older build of the library, with FusedLayerNorm only
        logger.info("fused CPU ops: the installed paddlemix_eva_ops predates them (`make ops`); plain kernels")
        return None
    return ops


def enabled_for(x: paddle.Tensor) -> bool:
    """Whether the fused kernels serve this activation: switch on, library loaded, eager float32 on CPU."""
    if not switches.FUSED_CPU_OPS.enabled() or not paddle.in_dynamic_mode():
        return False
    return x.dtype == paddle.float32 and x.place.is_cpu_place() and _ops() is not None


def linear(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
           residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
    """x @ weight + bias (+ residual): one GEMM with the bias and the residual applied in its epilogue."""
    if enabled_for(x):
        return _ops().linear(x, weight, bias, residual, use_fused=True)
    out = F.linear(x, weight, bias)
    return out if residual is None else out + residual


def swiglu(gate_and_value: paddle.Tensor) -> paddle.Tensor:
    """silu(first half) * second half of the last axis."""
    if enabled_for(gate_and_value):
        return _ops().swiglu(gate_and_value, use_fused=True)
    gate, value = paddle.split(gate_and_value, 2, axis=-1)
    return F.swish(gate) * value


def softmax(scores: paddle.Tensor) -> paddle.Tensor:
    """Softmax over the last axis (Paddle's CPU kernel runs ~0.5 GB/s on attention scores)."""
    if enabled_for(scores) and hasattr(_ops(), "softmax"):
        return _ops().softmax(scores, use_fused=True)
    return F.softmax(scores, axis=-1)


def rope_qkv_split(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor,
                   q_scale: float) -> Optional[Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]]:
    """(q * q_scale, k, v) as [B, H, N, d] with RoPE on q and k, in one pass over packed qkv [B, N, 3, H, d];
    None where the kernel does not serve these inputs (the caller keeps its own path)."""
    if enabled_for(qkv) and _ops().supports_rope_qkv(qkv, cos, sin):
        return _ops().rope_qkv_split(qkv, cos, sin, q_scale, use_fused=True)
    return None


def rope_qkv(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> Optional[paddle.Tensor]:
    """Packed qkv with RoPE on q and k, same layout; None where the kernel does not serve these inputs."""
    if enabled_for(qkv) and _ops().supports_rope_qkv(qkv, cos, sin):
        return _ops().rope_qkv(qkv, cos, sin, use_fused=True)
    return None
