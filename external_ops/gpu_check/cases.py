"""The correctness cases: which (x dtype, weight dtype) pairs, shapes, constant rows and epsilons are checked.

Pure Python (no torch), so the CPU test suite can check that the sweep covers what the kernels must handle.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, List, Tuple

#: (x dtype, weight/bias dtype) pairs the op accepts (layer_norm_op.cc: the scale has x's dtype or float32) and
#: layer_norm_cuda.cu instantiates (float32 x only with float32 weights).
DTYPE_PAIRS: Tuple[Tuple[str, str], ...] = (
    ("float32", "float32"),
    ("float16", "float16"),
    ("float16", "float32"),
    ("bfloat16", "bfloat16"),
    ("bfloat16", "float32"),
    ("float64", "float64"),
    ("float64", "float32"),
)

#: 17 ... 8192: sizes below / at / above a warp and the 256-thread block, multiples and non-multiples of the
#: 4- and 8-element vector widths (float4 of float32, 16 bytes of float16/bfloat16), EVA's 2730, odd primes.
HIDDEN_SIZES: Tuple[int, ...] = (17, 32, 33, 100, 127, 128, 255, 256, 257, 768, 1000, 1024, 1027, 2048, 2730, 4096,
                                 4099, 8191, 8192)
#: 1 row, a few, around the 256-row chunk of the weight-gradient reduction, a thousand.
SMALL_ROWS: Tuple[int, ...] = (1, 7, 255, 256, 257, 1000)
#: about 1e6 rows: 3907 chunks in the column reduction; a prime so the last chunk is partial.
MANY_ROWS = 1_000_003
#: (rows, hidden) of the large cases, each at most about 2**26 elements so the float64 reference fits easily.
LARGE_SHAPES: Tuple[Tuple[int, int], ...] = ((MANY_ROWS, 17), (MANY_ROWS, 64), (262_139, 256), (65_521, 1024),
                                             (16_381, 4096), (8_191, 8192))
#: values of constant rows, exact in every dtype checked
CONSTANTS: Tuple[float, ...] = (0.0, 1.0, -0.75, 2.5)
#: constant-row layouts: none, every row, every 4th row (index % 4 == 0)
CONSTANT_KINDS: Tuple[str, ...] = ("none", "all", "mixed")
MIXED_CONSTANT_EVERY = 4


def float32_value(value: float) -> float:
    """`value` rounded to float32: the kernels take epsilon as a float, so the float64 reference must use the same
    number or the constant rows' 1/sqrt(eps) would differ by the rounding of eps itself."""
    return struct.unpack("f", struct.pack("f", value))[0]


EPS_DEFAULT = float32_value(1e-5)  # torch / paddle default
EPS_EVA = float32_value(1e-6)  # EVA models


@dataclass(frozen=True)
class Case:
    """One correctness case: inputs of [rows, hidden], weights of w_dtype, seeded inputs."""

    x_dtype: str
    w_dtype: str
    rows: int
    hidden: int
    constant: str = "none"
    eps: float = EPS_DEFAULT
    seed: int = 0

    @property
    def elements(self) -> int:
        return self.rows * self.hidden

    @property
    def label(self) -> str:
        const = "" if self.constant == "none" else f" const={self.constant}"
        return f"{self.x_dtype}/{self.w_dtype} rows={self.rows} hidden={self.hidden}{const} eps={self.eps:.0e}"


def _numbered(cases: List[Case]) -> List[Case]:
    """Gives every case its own seed (its position), so each draws different inputs and reruns are identical."""
    return [Case(c.x_dtype, c.w_dtype, c.rows, c.hidden, c.constant, c.eps, seed=i) for i, c in enumerate(cases)]


def _constant_cases(x_dtype: str, w_dtype: str, hidden_sizes: Tuple[int, ...]) -> Iterator[Case]:
    """Constant rows, where var = 0 and 1/std = 1/sqrt(eps): one constant row, all rows, every 4th row."""
    for hidden in hidden_sizes:
        yield Case(x_dtype, w_dtype, 1, hidden, "all", EPS_EVA)
        yield Case(x_dtype, w_dtype, 33, hidden, "all", EPS_DEFAULT)
        yield Case(x_dtype, w_dtype, 64, hidden, "mixed", EPS_EVA)


def full_cases() -> List[Case]:
    """The full sweep: every pair x every hidden size x small row counts, the large shapes, constant rows, no rows."""
    cases: List[Case] = []
    for x_dtype, w_dtype in DTYPE_PAIRS:
        cases += [Case(x_dtype, w_dtype, rows, hidden) for hidden in HIDDEN_SIZES for rows in SMALL_ROWS]
        cases += [Case(x_dtype, w_dtype, rows, hidden) for rows, hidden in LARGE_SHAPES]
        cases += list(_constant_cases(x_dtype, w_dtype, (17, 256, 1027, 8192)))
        cases.append(Case(x_dtype, w_dtype, MANY_ROWS, 17, "mixed", EPS_DEFAULT))
        cases += [Case(x_dtype, w_dtype, 0, hidden) for hidden in (17, 1024)]
    return _numbered(cases)


def quick_cases() -> List[Case]:
    """A smaller sweep with the same coverage of kinds (every pair, 17 ... 8192, 1 ... 1e6 rows, constant rows)."""
    cases: List[Case] = []
    for x_dtype, w_dtype in DTYPE_PAIRS:
        cases += [Case(x_dtype, w_dtype, rows, hidden) for hidden in (17, 127, 1024, 4099, 8192) for rows in (1, 257)]
        cases.append(Case(x_dtype, w_dtype, MANY_ROWS, 17, "mixed", EPS_DEFAULT))
        cases.append(Case(x_dtype, w_dtype, 33, 1027, "all", EPS_EVA))
        cases.append(Case(x_dtype, w_dtype, 64, 8192, "mixed", EPS_EVA))
        cases.append(Case(x_dtype, w_dtype, 0, 17))
    return _numbered(cases)


def constant_row_mask(rows: int, kind: str) -> List[bool]:
    """Which rows of a case are constant."""
    if kind not in CONSTANT_KINDS:
        raise ValueError(f"unknown constant-row kind {kind!r}, expected one of {CONSTANT_KINDS}")
    if kind == "none":
        return [False] * rows
    if kind == "all":
        return [True] * rows
    return [r % MIXED_CONSTANT_EVERY == 0 for r in range(rows)]
