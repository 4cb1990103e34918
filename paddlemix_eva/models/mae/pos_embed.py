"""MAE's fixed 2-D sine-cosine position table.

The layout must match the released checkpoints exactly: inside each half all sines come before all cosines, and
the *first* half encodes the column (x) index, the second the row (y) index. Row 0 is the cls slot and is zero.
"""
from __future__ import annotations

import numpy as np


def sincos_1d(width: int, positions: np.ndarray) -> np.ndarray:
    """[len(positions), width]: sin(s * w_k) for k < width/2, then cos(s * w_k), w_k = 10000^(-k / (width/2))."""
    if width % 2:
        raise ValueError(f"a 1-D sin-cos embedding needs an even width, got {width}")
    half = width // 2
    omega = 1.0 / 10000.0 ** (np.arange(half, dtype=np.float64) / half)
    angles = np.outer(np.asarray(positions, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d_table(width: int, grid_size: int, cls_token: bool = True) -> np.ndarray:
    """[(1 +) grid_size**2, width] float32 table in raster token order (t = row * grid + col)."""
    if width % 4:
        raise ValueError(f"the 2-D sin-cos position table needs a width divisible by 4, got {width}")
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    table = np.concatenate([sincos_1d(width // 2, cols), sincos_1d(width // 2, rows)], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, width)), table], axis=0)
    return table.astype(np.float32)
