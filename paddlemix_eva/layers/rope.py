"""EVA-02's 2D rotary position embedding: tables and their application to q / k."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers.drop import with_prefix


def rope_angles(
    grid_size: Tuple[int, int], head_dim: int, pt_seq_len: Optional[int], theta: float = 10000.0
) -> np.ndarray:
    """Angle table [gh*gw, head_dim] of EVA-02's 2D RoPE.

    Channels [0, head_dim/2) encode the row, [head_dim/2, head_dim) the column; each of the head_dim/4
    frequencies theta^(-j/(head_dim/4)) drives one interleaved pair. Positions are rescaled to the
    pre-training grid (t_i = i * pt / ft) so a model pre-trained on 16x16 patches keeps its position range at
    any resolution; `pt_seq_len=None` keeps integer positions. Computed in float32 in the reference order.
    """
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dim divisible by 4, got {head_dim}")
    num_freqs = head_dim // 4
    exponent = np.arange(num_freqs, dtype=np.float32) / np.float32(num_freqs)
    freqs = (np.float32(1.0) / np.power(np.float32(theta), exponent)).astype(np.float32)

    def axis(n: int) -> np.ndarray:
        t = np.arange(n, dtype=np.float32)
        if pt_seq_len is not None:
            t = (t / np.float32(n) * np.float32(pt_seq_len)).astype(np.float32)
        return np.repeat(np.outer(t, freqs).astype(np.float32), 2, axis=1)  # [n, head_dim/2], pairs interleaved

    gh, gw = grid_size
    rows = np.broadcast_to(axis(gh)[:, None, :], (gh, gw, head_dim // 2))
    cols = np.broadcast_to(axis(gw)[None, :, :], (gh, gw, head_dim // 2))
    return np.concatenate([rows, cols], axis=-1).reshape(gh * gw, head_dim)


class VisionRotaryEmbedding(nn.Layer):
    """2D RoPE tables, shared by all blocks of a tower.

    The cos/sin buffers are not persisted (checkpoints never carry them) and are rebuilt whenever the token
    grid changes. `num_prefix_tokens` leading rows hold the identity rotation (cos 1, sin 0), so the cls token
    passes through unrotated without splitting the sequence.
    """

    def __init__(
        self,
        head_dim: int,
        grid_size: Tuple[int, int],
        pt_seq_len: Optional[int] = 16,
        num_prefix_tokens: int = 1,
        theta: float = 10000.0,
    ):
        super().__init__()
        self.head_dim = head_dim
        self.pt_seq_len = pt_seq_len
        self.num_prefix_tokens = num_prefix_tokens
        self.theta = theta
        self.grid_size: Tuple[int, int] = (0, 0)
        self.register_buffer("freqs_cos", paddle.zeros([0]), persistable=False)
        self.register_buffer("freqs_sin", paddle.zeros([0]), persistable=False)
        self.set_grid_size(grid_size)

    def set_grid_size(self, grid_size: Sequence[int]) -> None:
        grid_size = (int(grid_size[0]), int(grid_size[1]))
        if grid_size == self.grid_size:
            return
        angles = rope_angles(grid_size, self.head_dim, self.pt_seq_len, self.theta)
        cos, sin = np.cos(angles), np.sin(angles)
        if self.num_prefix_tokens:
            prefix = np.zeros((self.num_prefix_tokens, self.head_dim), np.float32)
            cos, sin = np.concatenate([prefix + 1.0, cos]), np.concatenate([prefix, sin])
        self.grid_size = grid_size
        self.freqs_cos = paddle.to_tensor(cos.astype(np.float32), place=self.freqs_cos.place)
        self.freqs_sin = paddle.to_tensor(sin.astype(np.float32), place=self.freqs_sin.place)

    def tables(self) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """(cos, sin) [prefix + gh * gw, head_dim], one row per token position, shared by the batch."""
        return self.freqs_cos, self.freqs_sin

    def kept_tables(self, keep_index: Optional[paddle.Tensor]) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """The tables of the tokens left by patch dropout: `gather_rope_tables(self.tables(), keep_index)`;
        `keep_index` None (nothing dropped) gives the shared tables themselves."""
        if keep_index is None:
            return self.tables()
        return gather_rope_tables(self.tables(), keep_index, self.num_prefix_tokens)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, grid={self.grid_size}, pt_seq_len={self.pt_seq_len}"


def gather_rope_tables(
    tables: Tuple[paddle.Tensor, paddle.Tensor], keep_index: paddle.Tensor, num_prefix_tokens: int = 1
) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Per-sample tables [B, prefix + K, head_dim] of the tokens kept by patch dropout: the prefix rows (the
    identity rotation of cls) and then, for sample b, the rows of its kept patches `keep_index[b]` ([B, K], patch
    indices without the prefix, as `PatchDropout` returns them). Every kept token keeps the rotation of its grid
    position. The tables stay constants (no gradient)."""
    index = with_prefix(keep_index, num_prefix_tokens)
    batch, kept = index.shape[0], index.shape[1]
    flat = index.reshape([-1])
    gathered = []
    for table in tables:
        rows = paddle.gather(table, flat).reshape([batch, kept, table.shape[-1]])
        rows.stop_gradient = True
        gathered.append(rows)
    return gathered[0], gathered[1]


def rotate_pairs(x: paddle.Tensor) -> paddle.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): the interleaved-pair rotation by 90 degrees."""
    pairs = x.reshape(x.shape[:-1] + [x.shape[-1] // 2, 2])
    return paddle.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)


def apply_rope_elementwise(x: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> paddle.Tensor:
    """`apply_rope` written with slices and a stack (the GPU fused-attention path keeps this form): on CPU the
    strided slices and the stack are several times slower than `apply_rope`."""
    return x * cos.astype(x.dtype) + rotate_pairs(x) * sin.astype(x.dtype)


def _as_dtype(t: paddle.Tensor, dtype) -> paddle.Tensor:
    """`t.astype(dtype)` without emitting a no-op cast into traced programs."""
    return t if t.dtype == dtype else t.astype(dtype)


_ROTATION_CACHE: Dict[Tuple[int, str, str], paddle.Tensor] = {}


def _pair_rotation_numpy(dim: int) -> np.ndarray:
    """[dim, dim] matrix P with x @ P == rotate_pairs(x): one +-1 per column, zeros elsewhere."""
    rot = np.zeros((dim, dim), np.float32)
    idx = np.arange(0, dim, 2)
    rot[idx + 1, idx] = -1.0  # out[2i] = -x[2i+1]
    rot[idx, idx + 1] = 1.0  # out[2i+1] = x[2i]
    return rot


def pair_rotation_matrix(dim: int, dtype, place=None) -> paddle.Tensor:
    """`rotate_pairs` as a constant matrix, so the rotation is one small GEMM instead of slice/neg/stack copies.

    Multiplying by it is exact: each output is one input times +-1 plus zeros. Cached per (dim, dtype, place) in
    dygraph; under `to_static` a fresh constant is emitted into the program instead (a cached eager tensor cannot
    be referenced from a static program).
    """
    if not paddle.in_dynamic_mode():
        return _as_dtype(paddle.to_tensor(_pair_rotation_numpy(dim)), dtype)
    key = (dim, str(dtype), str(place))
    rot = _ROTATION_CACHE.get(key)
    if rot is None:
        rot = _as_dtype(paddle.to_tensor(_pair_rotation_numpy(dim), place=place), dtype)
        rot.stop_gradient = True
        _ROTATION_CACHE[key] = rot
    return rot


def swap_pairs(table: paddle.Tensor) -> paddle.Tensor:
    """(t0, t1, t2, t3, ...) -> (t1, t0, t3, t2, ...) on the last axis (used on the small [N, head_dim] tables)."""
    shape = table.shape
    return table.reshape(shape[:-1] + [shape[-1] // 2, 2]).flip(-1).reshape(shape)


def apply_rope(x: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> paddle.Tensor:
    """Rotate q or k [..., N, head_dim] by tables [N, head_dim]: x * cos + rotate_pairs(x) * sin.

    Computed as x * cos + (x * swap_pairs(sin)) @ P with P = `pair_rotation_matrix`, which equals
    rotate_pairs(x) * sin exactly (every product is the same single product, the GEMM only adds zeros to it) but
    avoids the strided slice / stack copies, and lets graph compilers fuse the final add into the GEMM. The
    table swap touches only the small [N, head_dim] table. (One difference: an inf in x turns its whole head row
    into NaN here, through 0 * inf in the GEMM, where the elementwise form keeps it to its pair.)
    """
    cos, sin = _as_dtype(cos, x.dtype), _as_dtype(sin, x.dtype)
    rot = pair_rotation_matrix(x.shape[-1], x.dtype, x.place if paddle.in_dynamic_mode() else None)
    return x * cos + paddle.matmul(x * swap_pairs(sin), rot)


def apply_rope_packed_qkv(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> paddle.Tensor:
    """RoPE on the q and k slots of packed qkv [B, N, 3, H, d] with tables [N, d] shared by the batch, or
    per-sample tables [B, N, d] (`gather_rope_tables`, after patch dropout); v passes through unchanged.

    The tables are stacked to [(B,) N, 3, H, d] with the identity rotation (cos 1, sin 0) in the v slot, so one
    `apply_rope`-style expression covers the packed tensor without slicing it (v * 1 + 0 is exact). They are
    expanded over the heads on purpose: oneDNN's binary kernels fall off their fast path when an operand is
    broadcast over a middle axis (a [N, 3, 1, d] table made the whole Paddle Inference forward ~6x slower).
    In exported programs the tables are constants and get folded.
    """
    num_heads, dim = qkv.shape[3], qkv.shape[4]
    cos, sin = _as_dtype(cos, qkv.dtype), _as_dtype(sin, qkv.dtype)
    cos3 = paddle.stack([cos, cos, paddle.ones_like(cos)], axis=-2).unsqueeze(-2)  # [(B,) N, 3, 1, d]
    sin3 = paddle.stack([sin, sin, paddle.zeros_like(sin)], axis=-2).unsqueeze(-2)
    shape = list(cos.shape[:-1]) + [3, num_heads, dim]
    cos3, sin3 = cos3.expand(shape), swap_pairs(sin3).expand(shape)
    rot = pair_rotation_matrix(dim, qkv.dtype, qkv.place if paddle.in_dynamic_mode() else None)
    return qkv * cos3 + paddle.matmul(qkv * sin3, rot)
