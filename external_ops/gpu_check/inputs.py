"""Seeded inputs of a case, drawn on the device: rows with their own mean and spread, optional constant rows."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .cases import CONSTANTS, Case, constant_row_mask

#: row means drawn from [-4, 4] and row standard deviations from [0.05, 8] (log-uniform): the mean is up to 80
#: standard deviations away from zero, which exercises the cancellation in the variance
ROW_MEAN_RANGE = 4.0
ROW_STD_RANGE = (0.05, 8.0)


@dataclass
class Inputs:
    """x and dy [rows, hidden] in the case's x dtype, weight and bias [hidden] in its weight dtype."""

    x: torch.Tensor
    w: torch.Tensor
    b: torch.Tensor
    dy: torch.Tensor


def make_inputs(case: Case, device: torch.device) -> Inputs:
    """Inputs of `case`, identical on every run (the case's seed); drawn in float32, then rounded to the dtypes."""
    gen = torch.Generator(device=device).manual_seed(case.seed)
    rows, hidden = case.rows, case.hidden

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=device)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device)

    lo, hi = math.log(ROW_STD_RANGE[0]), math.log(ROW_STD_RANGE[1])
    row_mean = (uniform(rows, 1) * 2 - 1) * ROW_MEAN_RANGE
    row_std = (lo + uniform(rows, 1) * (hi - lo)).exp()
    x = row_mean + row_std * normal(rows, hidden)
    if case.constant != "none":
        mask = torch.tensor(constant_row_mask(rows, case.constant), device=device).unsqueeze(1)
        values = torch.tensor(CONSTANTS, device=device)[torch.arange(rows, device=device) % len(CONSTANTS)]
        x = torch.where(mask, values.unsqueeze(1).expand(rows, hidden), x)
    x_dtype, w_dtype = getattr(torch, case.x_dtype), getattr(torch, case.w_dtype)
    w = 1 + 0.25 * normal(hidden)
    b = 0.5 * normal(hidden)
    dy = normal(rows, hidden)
    return Inputs(x=x.to(x_dtype).contiguous(), w=w.to(w_dtype), b=b.to(w_dtype), dy=dy.to(x_dtype).contiguous())
