"""`linear(x, weight, bias, residual)`: x @ weight + bias + residual as one oneDNN GEMM on CPU, forward and backward.

    from paddlemix_eva_ops import linear
    out = linear(x, proj.weight, proj.bias, residual=shortcut)   # == F.linear(x, w, b) + shortcut

Paddle's Linear layout: weight [in, out], bias [out]; x [..., in] and residual [..., out]. The bias is the GEMM's
bias argument and the residual a binary-add post-op, both applied while the result tile is still in registers
(on 2 cores, [2056, 192] x [192, 576], 1.44 ms: the bias costs ~0.01 ms and bias + residual ~0.1 ms there,
where Paddle's own broadcast bias add takes 0.7 ms and a residual add 0.27 ms as separate passes).
Backward: dx = dy W^T and dW = x^T dy as two more oneDNN
GEMMs reading the transposes in place, dbias a column sum, dresidual = dy; gradients of stop_gradient inputs
are skipped.

The op runs for eager float32 CPU tensors (strided ones are made contiguous) when the extension found oneDNN;
anything else (static graphs, GPU tensors, other dtypes, AMP, mismatched shapes, oneDNN missing, the switch off)
computes `F.linear(x, weight, bias) (+ residual)`.
"""
from __future__ import annotations

import logging
from typing import Optional

import paddle

from paddlemix_eva_ops_lib import (
    fused_linear,
    fused_linear_bias,
    fused_linear_bias_residual,
    fused_linear_residual,
)

from ._eager import dense, eager_cpu_float32, needs_grad, report_fallback, where
from .onednn import onednn_info
from .plain import plain_linear
from .switch import resolve

__all__ = ["linear", "supports_linear"]

_OPS = {
    (False, False): lambda x, w, b, r, flags: fused_linear(x, w, *flags),
    (True, False): lambda x, w, b, r, flags: fused_linear_bias(x, w, b, *flags),
    (False, True): lambda x, w, b, r, flags: fused_linear_residual(x, w, r, *flags),
    (True, True): lambda x, w, b, r, flags: fused_linear_bias_residual(x, w, b, r, *flags),
}


def _shapes_fit(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor],
                residual: Optional[paddle.Tensor]) -> bool:
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[0]:
        return False
    if bias is not None and list(bias.shape) != [weight.shape[1]]:
        return False
    return residual is None or list(residual.shape) == list(x.shape[:-1]) + [weight.shape[1]]


def supports_linear(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                    residual: Optional[paddle.Tensor] = None) -> bool:
    """Whether `linear` would run the fused op on these inputs (ignoring the on/off switch)."""
    return eager_cpu_float32(x, weight, bias, residual) and _shapes_fit(x, weight, bias, residual) \
        and onednn_info().available


@paddle.jit.not_to_static  # traced programs get the plain expression's ops, not a converted copy of this
def linear(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
           residual: Optional[paddle.Tensor] = None, *, use_fused: Optional[bool] = None) -> paddle.Tensor:
    """x @ weight (+ bias) (+ residual), differentiable in all four. `use_fused`: None follows the process switch
    (`set_fused_cpu_ops_enabled`, `PADDLEMIX_EVA_DISABLE_FUSED_CPU_OPS`), False forces the plain expression."""
    if not resolve(use_fused):
        return plain_linear(x, weight, bias, residual)
    if not supports_linear(x, weight, bias, residual):
        _explain(x, weight, bias, residual)
        return plain_linear(x, weight, bias, residual)
    flags = (needs_grad(x), needs_grad(weight), needs_grad(bias))
    op = _OPS[(bias is not None, residual is not None)]
    return op(dense(x), dense(weight), dense(bias), dense(residual), flags)


def _explain(x, weight, bias, residual) -> None:
    if not eager_cpu_float32(x, weight, bias, residual):
        report_fallback("fused linear", where(x), "using F.linear")
    elif not _shapes_fit(x, weight, bias, residual):
        pass  # F.linear (or the residual add) raises its own error for the mismatch
    else:
        report_fallback("fused linear", onednn_info().description, "using F.linear", logging.WARNING)
