"""Transformer building blocks shared by every model family (EVA-02, EVA-CLIP, MAE, Evo-ViT).

Parameter names follow PaddleMIX (`q_proj`/`k_proj`/`v_proj`, `mlp.w1/w2/w3`, `mlp.ffn_ln`,
`attn.inner_attn_ln`) so published Paddle checkpoints load unchanged. Linear weights are [in, out].
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

LayerFactory = Callable[[int], nn.Layer]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- norms
def make_layer_norm(epsilon: float = 1e-6) -> LayerFactory:
    """LayerNorm factory. Vision towers use eps 1e-6 (Paddle's default is 1e-5, the CLIP text value)."""
    from .ops import fused_layer_norm_class  # deferred: the custom op is optional

    return partial(fused_layer_norm_class(), epsilon=epsilon)


# ----------------------------------------------------------------------------------------- drop path
def drop_path(x: paddle.Tensor, drop_prob: float, training: bool) -> paddle.Tensor:
    """Stochastic depth: drop the residual branch per sample and rescale the survivors."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    mask = paddle.floor(keep_prob + paddle.rand(shape, dtype="float32")).astype(x.dtype)
    return x / keep_prob * mask


class DropPath(nn.Layer):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


# ------------------------------------------------------------------------------------- patch embed
class PatchEmbed(nn.Layer):
    """Non-overlapping patches by a strided convolution, flattened in raster (row-major) order."""

    def __init__(self, image_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    @property
    def grid_size(self) -> Tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def num_patches(self) -> int:
        h, w = self.grid_size
        return h * w

    def check_input(self, image: paddle.Tensor, owner: str = "model") -> None:
        """Refuse anything but [B, in_chans, image_size, image_size] with a message saying what was expected."""
        if image.ndim != 4:
            raise ValueError(
                f"{owner} expects a 4-D image batch [B, {self.in_chans}, {self.image_size}, {self.image_size}], "
                f"got shape {list(image.shape)}"
            )
        _, c, h, w = image.shape
        if c != self.in_chans:
            raise ValueError(
                f"{owner} expects {self.in_chans}-channel images (config.in_chans), got {c} channels "
                f"(input shape {list(image.shape)})"
            )
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"{owner} was built for {self.image_size}x{self.image_size} images (config.image_size), got "
                f"{h}x{w}. Resize the input, or rebuild the model at the new size with "
                f"model.set_input_size({h}) / from_pretrained(..., image_size={h}), which interpolates pos_embed "
                f"and rebuilds RoPE."
            )

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        x = self.proj(image)  # [B, D, gh, gw]
        return x.flatten(2).transpose([0, 2, 1])


def scale_gradient(x: paddle.Tensor, scale: float) -> paddle.Tensor:
    """Identity in the forward pass; the backward pass sees `scale` x the gradient (0 = detach)."""
    if scale == 1.0:
        return x
    detached = x.detach()
    if scale == 0.0:
        return detached
    return detached + scale * (x - detached)


# ----------------------------------------------------------------------------------------- naming
@dataclass(frozen=True)
class LayerNames:
    """Attribute (= state-dict key) names of a block's sub-layers; the math is the same under every scheme."""

    norm1: str = "norm1"
    norm2: str = "norm2"
    attn_out: str = "proj"
    fc1: str = "fc1"
    fc2: str = "fc2"


#: EVA / timm-style vision blocks
VISION_NAMES = LayerNames()
#: OpenAI CLIP text blocks (`ln_1`, `attn.out_proj`, `mlp.c_fc`, `mlp.c_proj`)
CLIP_TEXT_NAMES = LayerNames(norm1="ln_1", norm2="ln_2", attn_out="out_proj", fc1="c_fc", fc2="c_proj")


# ----------------------------------------------------------------------------------------------- FFNs
class _FeedForward(nn.Layer):
    """hidden = f(x); [ffn_ln(hidden)]; output projection; dropout. Subclasses define the hidden map."""

    def _finish(self, hidden: paddle.Tensor) -> paddle.Tensor:
        if self.ffn_ln is not None:
            hidden = self.ffn_ln(hidden)
        out = self.output_projection(hidden)
        return self.drop(out) if self.drop is not None else out

    def _build_output(self, hidden_features: int, out_features: int, drop: float, norm_layer, subln: bool, out_name: str):
        self.ffn_ln = norm_layer(hidden_features) if subln else None
        self._out_name = out_name
        self.add_sublayer(out_name, nn.Linear(hidden_features, out_features))
        self.drop = nn.Dropout(drop) if drop > 0 else None

    @property
    def output_projection(self) -> nn.Linear:
        return getattr(self, self._out_name)


class Mlp(_FeedForward):
    """GELU MLP (EVA-01 / EVA-CLIP g-14 and E, CLIP text, MAE, DeiT), optionally with a sub-LN on the hidden
    activations. `names` picks the Linear names (`fc1`/`fc2`, or CLIP text's `c_fc`/`c_proj`)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: Optional[int] = None,
        drop: float = 0.0,
        norm_layer: Optional[LayerFactory] = None,
        subln: bool = False,
        names: LayerNames = VISION_NAMES,
    ):
        super().__init__()
        self._in_name = names.fc1
        self.add_sublayer(names.fc1, nn.Linear(in_features, hidden_features))
        self.act = nn.GELU()
        self._build_output(hidden_features, out_features or in_features, drop, norm_layer, subln, names.fc2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._finish(self.act(getattr(self, self._in_name)(x)))


class SwiGLU(_FeedForward):
    """SwiGLU: w3([ffn_ln](silu(w1 x) * w2 x)). w1 is the gate; sub-LN on the hidden size for EVA-02 B/L."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: Optional[int] = None,
        drop: float = 0.0,
        norm_layer: Optional[LayerFactory] = None,
        subln: bool = False,
        names: LayerNames = VISION_NAMES,
    ):
        super().__init__()
        self.w1 = nn.Linear(in_features, hidden_features)
        self.w2 = nn.Linear(in_features, hidden_features)
        # Swish with beta 1 is SiLU; Paddle's `swish` has a oneDNN kernel (and fuses into the preceding fc in
        # Paddle Inference), its `silu` only a plain single-threaded CPU kernel.
        self.act = nn.Swish()
        self._build_output(hidden_features, out_features or in_features, drop, norm_layer, subln, "w3")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._finish(self.act(self.w1(x)) * self.w2(x))


# ----------------------------------------------------------------------------------------------- RoPE
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
        return self.freqs_cos, self.freqs_sin

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, grid={self.grid_size}, pt_seq_len={self.pt_seq_len}"


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


# ----------------------------------------------------------------------------------------- attention
def _use_fused_attention(x: paddle.Tensor) -> bool:
    """Paddle's fused kernels (flash / memory-efficient) are GPU kernels; on CPU the matmul path is used."""
    if x.dtype not in (paddle.float16, paddle.bfloat16):
        return False
    if not paddle.in_dynamic_mode():  # static graph (to_static / jit.save): variables carry no place
        return paddle.get_device().startswith("gpu")
    return x.place.is_gpu_place()


#: Set to 1 to keep the CPU inference forward on the plain matmul/softmax path instead of `self_dp_attention`.
DISABLE_CPU_FUSED_ATTENTION_ENV = "PADDLEMIX_EVA_DISABLE_CPU_FUSED_ATTENTION"


@lru_cache(maxsize=None)
def cpu_fused_attention_available() -> bool:
    """Whether Paddle's fused CPU attention kernel (`self_dp_attention`, forward only) can be used here.

    The kernel is written with AVX-512 intrinsics (Paddle's own fuse pass only emits it on AVX-512 CPUs), so it is
    used only where the CPU reports avx512f; `PADDLEMIX_EVA_DISABLE_CPU_FUSED_ATTENTION=1` turns it off.
    """
    if os.environ.get(DISABLE_CPU_FUSED_ATTENTION_ENV, "0") not in ("", "0", "false", "False"):
        logger.info("CPU attention: matmul path (%s is set)", DISABLE_CPU_FUSED_ATTENTION_ENV)
        return False
    core = paddle.base.core
    if not hasattr(paddle._legacy_C_ops, "self_dp_attention") or not hasattr(paddle._C_ops, "self_dp_attention"):
        logger.debug("CPU attention: matmul path (this Paddle has no self_dp_attention op)")
        return False
    if not (hasattr(core, "supports_avx512f") and core.supports_avx512f()):
        logger.debug("CPU attention: matmul path (the fused kernel needs AVX-512)")
        return False
    return True


def cpu_fused_attention(qkv: paddle.Tensor, scale: float, num_heads: int) -> paddle.Tensor:
    """softmax(q k^T * scale) v for packed qkv [B, N, 3, H, d] -> [B, N, H, d] with Paddle's fused CPU kernel.

    One pass, no [B, H, N, N] score tensor in memory and no transposes. Forward only (the op has no gradient).
    Agrees with the matmul path to ~1e-6 relative (the kernel's exp/accumulation order differ).
    """
    if paddle.in_dynamic_mode():
        return paddle._legacy_C_ops.self_dp_attention(qkv, "alpha", float(scale), "head_number", int(num_heads))
    return paddle._C_ops.self_dp_attention(qkv, float(scale), int(num_heads))


def apply_rope_packed_qkv(qkv: paddle.Tensor, cos: paddle.Tensor, sin: paddle.Tensor) -> paddle.Tensor:
    """RoPE on the q and k slots of packed qkv [B, N, 3, H, d] with tables [N, d]; v passes through unchanged.

    The tables are stacked to [N, 3, H, d] with the identity rotation (cos 1, sin 0) in the v slot, so one
    `apply_rope`-style expression covers the packed tensor without slicing it (v * 1 + 0 is exact). They are
    expanded over the heads on purpose: oneDNN's binary kernels fall off their fast path when an operand is
    broadcast over a middle axis (a [N, 3, 1, d] table made the whole Paddle Inference forward ~6x slower).
    In exported programs the tables are constants and get folded.
    """
    num_heads, dim = qkv.shape[3], qkv.shape[4]
    cos, sin = _as_dtype(cos, qkv.dtype), _as_dtype(sin, qkv.dtype)
    cos3 = paddle.stack([cos, cos, paddle.ones_like(cos)], axis=1).unsqueeze(2)  # [N, 3, 1, d]
    sin3 = paddle.stack([sin, sin, paddle.zeros_like(sin)], axis=1).unsqueeze(2)
    shape = [cos.shape[0], 3, num_heads, dim]
    cos3, sin3 = cos3.expand(shape), swap_pairs(sin3).expand(shape)
    rot = pair_rotation_matrix(dim, qkv.dtype, qkv.place if paddle.in_dynamic_mode() else None)
    return qkv * cos3 + paddle.matmul(qkv * sin3, rot)


class Attention(nn.Layer):
    """Multi-head self-attention with separate q/k/v projections (k without bias unless asked), optional 2D RoPE
    on q and k, an optional LayerNorm on the merged heads before `proj` (EVA-CLIP's `inner_attn_ln`) and an
    optional additive / boolean attention mask (CLIP text tower)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: Optional[int] = None,
        qkv_bias: bool = True,
        k_bias: bool = False,
        qk_scale: Optional[float] = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        inner_attn_ln: bool = False,
        norm_layer: Optional[LayerFactory] = None,
        out_name: str = "proj",
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner_dim = self.head_dim * num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.q_proj = nn.Linear(dim, inner_dim, bias_attr=None if qkv_bias else False)
        self.k_proj = nn.Linear(dim, inner_dim, bias_attr=None if k_bias else False)
        self.v_proj = nn.Linear(dim, inner_dim, bias_attr=None if qkv_bias else False)
        self.attn_drop = attn_drop
        self.inner_attn_ln = (norm_layer or make_layer_norm())(inner_dim) if inner_attn_ln else None
        self._out_name = out_name
        self.add_sublayer(out_name, nn.Linear(inner_dim, dim))
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else None

    @property
    def output_projection(self) -> nn.Linear:
        return getattr(self, self._out_name)

    def _qkv_weight(self) -> paddle.Tensor:
        """[dim, 3 * inner]: the three projection weights side by side.

        Concatenated on every call rather than cached: it costs one small copy per forward, is differentiable (the
        gradients reach the separate `q_proj`/`k_proj`/`v_proj` parameters, which stay the state-dict layout) and
        can never go stale after a weight update; exported static graphs constant-fold it.
        """
        return paddle.concat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight], axis=1)

    def _qkv_bias(self) -> Optional[paddle.Tensor]:
        """[3 * inner] bias of the fused projection; a missing bias (k, or all without qkv_bias) is zeros."""
        biases = [self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]
        present = [bias for bias in biases if bias is not None]
        if not present:
            return None
        zeros = paddle.zeros(present[0].shape, dtype=present[0].dtype)  # zeros_like asks a static variable's place
        return paddle.concat([bias if bias is not None else zeros for bias in biases])

    def forward(
        self,
        x: paddle.Tensor,
        rope: Optional[Tuple[paddle.Tensor, paddle.Tensor]] = None,
        attn_mask: Optional[paddle.Tensor] = None,
        return_cls_attention: bool = False,
    ) -> paddle.Tensor:
        """Attention output [B, N, dim]; with `return_cls_attention`, (output, cls_attention [B, H, N]): see
        `forward_with_cls_attention` (no RoPE or mask then)."""
        if return_cls_attention:
            if rope is not None or attn_mask is not None:
                raise NotImplementedError("return_cls_attention supports attention without RoPE or masks")
            return self.forward_with_cls_attention(x)
        b, n, _ = x.shape
        if _use_fused_attention(x) and attn_mask is None:
            q = self.q_proj(x).reshape([b, n, self.num_heads, self.head_dim])
            k = self.k_proj(x).reshape([b, n, self.num_heads, self.head_dim])
            v = self.v_proj(x).reshape([b, n, self.num_heads, self.head_dim])
            if rope is not None:  # rotate in [B, N, H, d]: tables broadcast over heads
                cos, sin = rope[0].unsqueeze(1), rope[1].unsqueeze(1)
                q, k = apply_rope_elementwise(q, cos, sin), apply_rope_elementwise(k, cos, sin)
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop, training=self.training, scale=self.scale
            )
        else:
            # One GEMM for q, k and v packed as [B, N, 3, H, d]; reshape sizes 0 ("keep") leave the batch and
            # sequence dims symbolic so exported graphs stay batch-agnostic and fusable.
            if type(self.q_proj) is nn.Linear:
                qkv = F.linear(x, self._qkv_weight(), self._qkv_bias())
            else:  # tensor-parallel (or otherwise wrapped) projections keep their own forward
                qkv = paddle.stack([self.q_proj(x), self.k_proj(x), self.v_proj(x)], axis=2)
            qkv = qkv.reshape([0, 0, 3, self.num_heads, self.head_dim])
            if self._use_cpu_fused_attention(qkv, attn_mask):
                if rope is not None:
                    qkv = apply_rope_packed_qkv(qkv, *rope)
                out = cpu_fused_attention(qkv, self.scale, self.num_heads)
            else:
                out = self._matmul_attention(qkv, rope, attn_mask)
        return self._project(out)

    def forward_with_cls_attention(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """(output [B, N, dim], cls_attention [B, H, N]): also the softmax row of the cls query (token 0) over all
        keys, per head, which token-pruning models (Evo-ViT) rank tokens by.

        The row never materialises the [B, H, N, N] map, so the fused CPU kernel still serves the output at
        inference. It is the map before attention dropout.
        """
        qkv = F.linear(x, self._qkv_weight(), self._qkv_bias()).reshape([0, 0, 3, self.num_heads, self.head_dim])
        if self._use_cpu_fused_attention(qkv, None):
            out = cpu_fused_attention(qkv, self.scale, self.num_heads)
        else:
            out = self._matmul_attention(qkv, None, None)
        return self._project(out), self._cls_attention_row(x)

    def _cls_attention_row(self, x: paddle.Tensor) -> paddle.Tensor:
        """softmax(q_0 k_n * scale) per head, [B, H, N], from the input x [B, N, dim]: q_0 . k_n = x_n . (W_k q_0)
        + b_k . q_0 per head. Reading k out of the packed qkv instead costs a strided copy, and a second reader
        of qkv blocks the exported graph's fusions: Evo-DeiT-S ran ~5% slower that way (eager and exported)."""
        heads, dim = self.num_heads, self.head_dim
        q_cls = (F.linear(x[:, 0], self.q_proj.weight, self.q_proj.bias) * self.scale).reshape([-1, heads, dim])
        keys_by_query = paddle.einsum("chd,bhd->bch", self.k_proj.weight.reshape([0, heads, dim]), q_cls)
        scores = paddle.matmul(x, keys_by_query)  # [B, N, H]
        if self.k_proj.bias is not None:
            scores = scores + (self.k_proj.bias.reshape([heads, dim]) * q_cls).sum(axis=-1).unsqueeze(1)
        return F.softmax(scores.transpose([0, 2, 1]), axis=-1)

    def _matmul_attention(
        self,
        qkv: paddle.Tensor,
        rope: Optional[Tuple[paddle.Tensor, paddle.Tensor]],
        attn_mask: Optional[paddle.Tensor],
    ) -> paddle.Tensor:
        """Packed qkv [B, N, 3, H, d] -> attention output [B, N, H, d] by matmul / softmax / matmul (any device,
        differentiable, masks and attention dropout)."""
        if rope is not None:
            qkv = apply_rope_packed_qkv(qkv, *rope)
        if paddle.in_dynamic_mode():
            # Eager: three [B, N, H, d] -> [B, H, N, d] transposes. Paddle's CPU strided-copy kernels make one 5-D
            # transpose plus slices ~1.6x slower per training step (Ti, batch 4: 0.88 s vs 1.39 s fwd+bwd).
            q, k, v = (t.transpose([0, 2, 1, 3]) for t in paddle.unbind(qkv, axis=2))
        else:
            # Static graphs: one transpose to [3, B, H, N, d] (slightly faster in Paddle Inference)
            qkv = qkv.transpose([2, 0, 3, 1, 4])
            q, k, v = qkv[0], qkv[1], qkv[2]
        attn = paddle.matmul(q * self.scale, k, transpose_y=True)
        if attn_mask is not None:
            if attn_mask.dtype == paddle.bool:
                attn = paddle.where(attn_mask, attn, paddle.full_like(attn, float("-inf")))
            else:
                attn = attn + attn_mask.astype(attn.dtype)
        attn = F.softmax(attn, axis=-1)
        if self.attn_drop > 0 and self.training:
            attn = F.dropout(attn, self.attn_drop)
        return paddle.matmul(attn, v).transpose([0, 2, 1, 3])

    @paddle.jit.not_to_static
    def _use_cpu_fused_attention(self, qkv: paddle.Tensor, attn_mask: Optional[paddle.Tensor]) -> bool:
        """The fused CPU kernel serves inference only: float32 on CPU, no mask, no attention dropout, and no
        gradient needed (eager: the packed qkv does not require grad, e.g. under `paddle.no_grad()`; static graph:
        the layer is in eval mode, as for `paddle.jit.save` exports)."""
        if attn_mask is not None or qkv.dtype != paddle.float32 or (self.training and self.attn_drop > 0):
            return False
        if not cpu_fused_attention_available():
            return False
        if paddle.in_dynamic_mode():
            return qkv.place.is_cpu_place() and qkv.stop_gradient
        return not self.training and paddle.get_device() == "cpu"

    def _project(self, out: paddle.Tensor) -> paddle.Tensor:
        """Merged heads [B, N, H, d] -> inner_attn_ln -> proj -> proj_drop."""
        out = out.reshape([0, 0, self.num_heads * self.head_dim])
        if self.inner_attn_ln is not None:
            out = self.inner_attn_ln(out)
        out = self.output_projection(out)
        if self.proj_drop is not None:
            out = self.proj_drop(out)
        return out


# ---------------------------------------------------------------------------------------------- block
class Block(nn.Layer):
    """Transformer block: pre-norm residuals by default, post-norm (EVA-CLIP bigE) when asked."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden_dim: int,
        head_dim: Optional[int] = None,
        qkv_bias: bool = True,
        k_bias: bool = False,
        qk_scale: Optional[float] = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: Optional[LayerFactory] = None,
        swiglu: bool = True,
        subln: bool = False,
        inner_attn_ln: bool = False,
        postnorm: bool = False,
        names: LayerNames = VISION_NAMES,
    ):
        super().__init__()
        norm_layer = norm_layer or make_layer_norm()
        self.postnorm = postnorm
        self._norm_names = (names.norm1, names.norm2)
        self.add_sublayer(names.norm1, norm_layer(dim))
        self.attn = Attention(
            dim,
            num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            k_bias=k_bias,
            qk_scale=qk_scale,
            attn_drop=attn_drop,
            proj_drop=drop,
            inner_attn_ln=inner_attn_ln,
            norm_layer=norm_layer,
            out_name=names.attn_out,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None
        self.add_sublayer(names.norm2, norm_layer(dim))
        ffn = SwiGLU if swiglu else Mlp
        self.mlp = ffn(dim, mlp_hidden_dim, drop=drop, norm_layer=norm_layer, subln=subln, names=names)

    def _residual(self, x: paddle.Tensor, branch: paddle.Tensor) -> paddle.Tensor:
        return x + (self.drop_path(branch) if self.drop_path is not None else branch)

    def forward(
        self,
        x: paddle.Tensor,
        rope: Optional[Tuple[paddle.Tensor, paddle.Tensor]] = None,
        attn_mask: Optional[paddle.Tensor] = None,
    ) -> paddle.Tensor:
        norm1, norm2 = (getattr(self, name) for name in self._norm_names)
        if self.postnorm:
            x = self._residual(x, norm1(self.attn(x, rope, attn_mask)))
            return self._residual(x, norm2(self.mlp(x)))
        x = self._residual(x, self.attn(norm1(x), rope, attn_mask))
        return self._residual(x, self.mlp(norm2(x)))

    def forward_with_cls_attention(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """(block output, cls_attention [B, H, N] of its attention): see `Attention.forward_with_cls_attention`.
        Pre-norm blocks without RoPE or masks (what token-pruning models use)."""
        if self.postnorm:
            raise NotImplementedError("forward_with_cls_attention supports pre-norm blocks only")
        norm1, norm2 = (getattr(self, name) for name in self._norm_names)
        branch, cls_attention = self.attn(norm1(x), return_cls_attention=True)  # through __call__: hooks see it
        x = self._residual(x, branch)
        return self._residual(x, self.mlp(norm2(x))), cls_attention


# ---------------------------------------------------------------------------------------- utilities
def resample_abs_pos_embed(
    pos_embed: paddle.Tensor, new_grid: Tuple[int, int], num_prefix_tokens: int = 1
) -> paddle.Tensor:
    """Bicubic resize (align_corners=False, no antialias, as the official EVA-02 finetune code) of the grid part of
    a [1, prefix + gh*gw, D] position table; prefix rows (cls) are kept."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = int(round(math.sqrt(grid.shape[1])))
    if old * old != grid.shape[1]:
        raise ValueError(f"pos_embed grid of {grid.shape[1]} tokens is not square; cannot resample it")
    if (old, old) == tuple(new_grid):
        return pos_embed
    dim = grid.shape[-1]
    dtype = grid.dtype
    grid = grid.astype("float32").reshape([1, old, old, dim]).transpose([0, 3, 1, 2])
    grid = F.interpolate(grid, size=list(new_grid), mode="bicubic", align_corners=False)
    grid = grid.transpose([0, 2, 3, 1]).reshape([1, new_grid[0] * new_grid[1], dim]).astype(dtype)
    return paddle.concat([prefix, grid], axis=1)


def resample_checkpoint_pos_embed(
    state_dict: Dict[str, np.ndarray], key: str, grid_size: int, width: int, source: str
) -> None:
    """Fit a checkpoint's [1, 1 + g*g, width] position table under `key` to a grid_size x grid_size model, in
    place and with a warning (`resample_abs_pos_embed`). Tables that already fit, of another width or of a
    non-square grid are left for the loader's shape check."""
    pos = state_dict.get(key)
    if pos is None or pos.ndim != 3 or pos.shape[1] == grid_size**2 + 1 or pos.shape[2] != width:
        return
    old_side = int(round(math.sqrt(pos.shape[1] - 1)))
    if old_side * old_side != pos.shape[1] - 1:
        return
    logger.warning("%s: %s is for a %dx%d patch grid; interpolating it bicubically to the %dx%d grid of this model",
                   source, key, old_side, old_side, grid_size, grid_size)
    table = paddle.to_tensor(np.asarray(pos, dtype=np.float32))
    state_dict[key] = resample_abs_pos_embed(table, (grid_size, grid_size)).numpy().astype(pos.dtype)


def init_trunc_normal(tensor: paddle.Tensor, std: float = 0.02, bound: float = 2.0) -> None:
    """Truncated normal with absolute bounds [-bound, bound] (timm's default, i.e. a plain normal at std .02)."""
    nn.initializer.TruncatedNormal(mean=0.0, std=std, a=-bound, b=bound)(tensor)


def init_zeros(tensor: paddle.Tensor) -> None:
    nn.initializer.Constant(0.0)(tensor)


def init_ones(tensor: paddle.Tensor) -> None:
    nn.initializer.Constant(1.0)(tensor)


def init_xavier_uniform(weight: paddle.Tensor, fan_in: int, fan_out: int) -> None:
    """U(+-sqrt(6 / (fan_in + fan_out))) with the fans given (e.g. those of a fused layer the weight is part of)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    nn.initializer.Uniform(-limit, limit)(weight)


def init_xavier_uniform_flat(weight: paddle.Tensor) -> None:
    """Xavier-uniform on a conv weight viewed as [out, in*k*k] (fan_out = out), as upstream MIM init does."""
    init_xavier_uniform(weight, int(np.prod(weight.shape[1:])), weight.shape[0])


def init_torch_default(weight: paddle.Tensor, fan_in: int) -> None:
    """PyTorch's default Linear / Conv init of weight and bias (kaiming-uniform, a = sqrt(5)): U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.initializer.Uniform(-bound, bound)(weight)


def init_conv_torch_default(conv: nn.Layer) -> None:
    """PyTorch's default init of a conv's weight and bias (fan_in = in_channels x kernel area)."""
    fan_in = int(np.prod(conv.weight.shape[1:]))
    init_torch_default(conv.weight, fan_in)
    if conv.bias is not None:
        init_torch_default(conv.bias, fan_in)


def init_vit_layer(layer: nn.Layer, std: float = 0.02, xavier: bool = False) -> None:
    """Default init of one sub-layer: Linear trunc-normal (or xavier-normal) with zero bias, LayerNorm 1/0."""
    if isinstance(layer, nn.Linear):
        if xavier:
            nn.initializer.XavierNormal()(layer.weight)
        else:
            init_trunc_normal(layer.weight, std)
        if layer.bias is not None:
            init_zeros(layer.bias)
    elif isinstance(layer, nn.LayerNorm):
        if layer.weight is not None:
            init_ones(layer.weight)
        if layer.bias is not None:
            init_zeros(layer.bias)
