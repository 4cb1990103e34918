"""Shared by the fused CPU op wrappers: when an input can take a kernel, gradient flags, one-time fallback notes."""
from __future__ import annotations

import logging
from typing import Optional, Set, Tuple

import paddle

logger = logging.getLogger("paddlemix_eva_ops")

_reported: Set[Tuple[str, str]] = set()


def _amp_active() -> bool:
    """Inside `paddle.amp.auto_cast` the plain expressions may run in low precision; the float32 ops would not."""
    tracer = paddle.base.framework._dygraph_tracer()
    level = getattr(tracer, "_amp_level", None)
    return level is not None and level != paddle.base.core.AmpLevel.O0


def eager_cpu_float32(*tensors: Optional[paddle.Tensor]) -> bool:
    """Eager mode, no AMP, and every given tensor a float32 CPU tensor (None entries are skipped)."""
    if not paddle.in_dynamic_mode() or _amp_active():
        return False
    return all(t.dtype == paddle.float32 and t.place.is_cpu_place() for t in tensors if t is not None)


def needs_grad(t: Optional[paddle.Tensor]) -> bool:
    """Whether autograd will ask for this input's gradient (the ops skip the ones it will not)."""
    return t is not None and not t.stop_gradient and paddle.is_grad_enabled()


def dense(t: Optional[paddle.Tensor]) -> Optional[paddle.Tensor]:
    """An op input: strided views copied (the kernels read raw row-major memory), and under `paddle.no_grad()`
    detached. Paddle's custom ops ignore the grad mode: with a trainable input they record a backward node (and
    keep their inputs alive) even there, and their outputs come out with stop_gradient=False."""
    if t is None:
        return None
    if not t.is_contiguous():
        t = t.contiguous()
    return t if t.stop_gradient or paddle.is_grad_enabled() else t.detach()


def where(t: Optional[paddle.Tensor]) -> str:
    """'float64 on Place(cpu)', or 'static graph' (static variables carry no place)."""
    if not paddle.in_dynamic_mode():
        return "static graph"
    if _amp_active():
        return "paddle.amp.auto_cast"
    return f"{t.dtype} on {t.place}" if t is not None else "these inputs"


def report_fallback(op: str, reason: str, how: str, level: int = logging.INFO) -> None:
    """Log once per (op, reason) that the plain expression runs instead of the fused kernel."""
    if (op, reason) not in _reported:
        _reported.add((op, reason))
        logger.log(level, "%s: no fused CPU kernel for %s; %s there", op, reason, how)
