"""Measures one output against its reference and tolerance (torch tensors, used through their methods)."""
from __future__ import annotations

from typing import Any

from .results import OutputCheck


def check_output(got: Any, ref: Any, tol: Any) -> OutputCheck:
    """|got - ref| <= tol element by element, in float64; nan or inf in `got` fails the element."""
    got = got.double().reshape(ref.shape)
    err = (got - ref).abs()
    inside = err <= tol  # False for nan
    elements = int(ref.numel())
    if elements == 0:
        return OutputCheck(0.0, 0.0, 0, 0)
    # err / tol; a zero tolerance means "must be exact": 0/0 -> 0, x/0 -> inf; a nan error stays nan
    ratio = (err / tol).nan_to_num(nan=0.0, posinf=float("inf")).where(~err.isnan(), err)
    return OutputCheck(
        max_error=float(err.max()),
        worst_ratio=float(ratio.max()),
        failed=int(elements - int(inside.sum())),
        elements=elements,
    )
