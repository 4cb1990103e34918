"""The float64 reference: torch.nn.functional.layer_norm and its autograd on the inputs' exact values."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .inputs import Inputs


@dataclass
class Reference:
    """Inputs as float64 and every output of the reference; mean and rstd [rows, 1] (biased variance, as the op)."""

    x: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor
    dy: torch.Tensor
    y: torch.Tensor
    mean: torch.Tensor
    rstd: torch.Tensor
    dx: torch.Tensor
    dscale: torch.Tensor
    dbias: torch.Tensor


def reference(inputs: Inputs, eps: float) -> Reference:
    """y, dx, dscale, dbias from F.layer_norm + autograd in float64; mean and 1/std computed directly in float64.
    Every input is exact in float64, so the reference carries only float64 rounding (about 1e-16)."""
    x = inputs.x.double()
    w, b, dy = inputs.w.double(), inputs.b.double(), inputs.dy.double()
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, b))
    y = F.layer_norm(xg, (x.shape[-1],), wg, bg, eps)
    y.backward(dy)
    mean = x.mean(-1, keepdim=True)
    rstd = ((x - mean).square().mean(-1, keepdim=True) + eps).rsqrt()
    return Reference(x=x, w=w, b=b, dy=dy, y=y.detach(), mean=mean, rstd=rstd, dx=xg.grad, dscale=wg.grad,
                     dbias=bg.grad)
