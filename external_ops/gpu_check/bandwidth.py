"""Bandwidth bookkeeping: the bytes each pass must move, the shapes measured, GB/s from a time.

Both kernels (ours and PyTorch's) are credited the same minimal traffic, each tensor read or written once, so
the GB/s are comparable with each other and with a device-to-device copy (read + write of x's size):
  forward:  read x, w, b; write y, mean, rstd (float32)
  backward: read x, dy, w, mean, rstd; write dx, dscale, dbias (the bias is not read; scratch space not counted)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

ITEMSIZE: Dict[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
STATS_ITEMSIZE = 4  # mean and 1/std are float32

#: large (rows, hidden) shapes, each 2**26 elements or about: small to large hidden sizes at a similar footprint
SHAPES_FULL: Tuple[Tuple[int, int], ...] = ((1_048_576, 64), (65_536, 1024), (16_384, 4096), (8_192, 8192))
SHAPES_QUICK: Tuple[Tuple[int, int], ...] = ((65_536, 1024), (8_192, 8192))
DTYPES_FULL: Tuple[str, ...] = ("bfloat16", "float16", "float32")
DTYPES_QUICK: Tuple[str, ...] = ("bfloat16", "float32")
PASSES = ("forward", "backward")


def forward_bytes(rows: int, hidden: int, dtype: str, w_dtype: str) -> int:
    """x read and y written ([rows, hidden] each), w and b read, mean and 1/std written."""
    return 2 * rows * hidden * ITEMSIZE[dtype] + 2 * hidden * ITEMSIZE[w_dtype] + 2 * rows * STATS_ITEMSIZE


def backward_bytes(rows: int, hidden: int, dtype: str, w_dtype: str) -> int:
    """x, dy read and dx written, w read and dscale, dbias written, mean and 1/std read."""
    return 3 * rows * hidden * ITEMSIZE[dtype] + 3 * hidden * ITEMSIZE[w_dtype] + 2 * rows * STATS_ITEMSIZE


def pass_bytes(pass_name: str, rows: int, hidden: int, dtype: str, w_dtype: str) -> int:
    if pass_name == "forward":
        return forward_bytes(rows, hidden, dtype, w_dtype)
    if pass_name == "backward":
        return backward_bytes(rows, hidden, dtype, w_dtype)
    raise ValueError(f"unknown pass {pass_name!r}, expected one of {PASSES}")


def copy_bytes(rows: int, hidden: int, dtype: str) -> int:
    """`dst.copy_(src)` of a tensor of x's size: one read and one write."""
    return 2 * rows * hidden * ITEMSIZE[dtype]


def gbps(nbytes: int, ms: float) -> float:
    """Bytes per millisecond as GB/s (1e9 bytes); nan for a missing or zero time."""
    return nbytes / (ms * 1e-3) / 1e9 if ms and ms > 0 else float("nan")


@dataclass(frozen=True)
class BandwidthRow:
    """Median times (ms) of one pass at one shape and dtype, for our kernels, PyTorch's and a copy."""

    pass_name: str
    dtype: str
    rows: int
    hidden: int
    ours_ms: float
    torch_ms: float
    copy_ms: float

    @property
    def nbytes(self) -> int:
        return pass_bytes(self.pass_name, self.rows, self.hidden, self.dtype, self.dtype)

    @property
    def ours_gbps(self) -> float:
        return gbps(self.nbytes, self.ours_ms)

    @property
    def torch_gbps(self) -> float:
        return gbps(self.nbytes, self.torch_ms)

    @property
    def copy_gbps(self) -> float:
        return gbps(copy_bytes(self.rows, self.hidden, self.dtype), self.copy_ms)
