"""Multi-head self-attention with optional RoPE, inner LayerNorm, masks and fused kernels."""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Optional, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddlemix_eva.layers import cpu_kernels, switches
from paddlemix_eva.layers.norm import LayerFactory, make_layer_norm
from paddlemix_eva.layers.rope import apply_rope_elementwise, apply_rope_packed_qkv
from paddlemix_eva.utils import compat

logger = logging.getLogger(__name__)


def _use_fused_attention(x: paddle.Tensor) -> bool:
    """Paddle's fused kernels (flash / memory-efficient) are GPU kernels; on CPU the matmul path is used."""
    if x.dtype not in (paddle.float16, paddle.bfloat16):
        return False
    if not paddle.in_dynamic_mode():  # static graph (to_static / jit.save): variables carry no place
        return paddle.get_device().startswith("gpu")
    return x.place.is_gpu_place()


#: Set to 1 to keep the CPU inference forward on the plain matmul/softmax path instead of `self_dp_attention`
#: (the default of `switches.CPU_FUSED_ATTENTION`).
DISABLE_CPU_FUSED_ATTENTION_ENV = switches.CPU_FUSED_ATTENTION.disable_env


def cpu_fused_attention_available() -> bool:
    """Whether Paddle's fused CPU attention kernel (`self_dp_attention`, forward only) is used here: the switch
    (`switches.CPU_FUSED_ATTENTION`) on and the kernel runnable on this CPU."""
    return switches.CPU_FUSED_ATTENTION.enabled() and cpu_fused_attention_supported()


@lru_cache(maxsize=None)
def cpu_fused_attention_supported() -> bool:
    """Whether this Paddle has `self_dp_attention` and this CPU runs it: the kernel is written with AVX-512
    intrinsics (Paddle's own fuse pass only emits it on AVX-512 CPUs), so it needs avx512f."""
    if not compat.has_self_dp_attention():
        logger.debug("CPU attention: matmul path (this Paddle has no self_dp_attention op)")
        return False
    if not compat.cpu_supports_avx512f():
        logger.debug("CPU attention: matmul path (the fused kernel needs AVX-512)")
        return False
    return True


def cpu_fused_attention(qkv: paddle.Tensor, scale: float, num_heads: int) -> paddle.Tensor:
    """softmax(q k^T * scale) v for packed qkv [B, N, 3, H, d] -> [B, N, H, d] with Paddle's fused CPU kernel.

    One pass, no [B, H, N, N] score tensor in memory and no transposes. Forward only (the op has no gradient).
    Agrees with the matmul path to ~1e-6 relative (the kernel's exp/accumulation order differ).
    """
    return compat.self_dp_attention(qkv, scale, num_heads)


def shared_rope_tables(rope: Tuple[paddle.Tensor, paddle.Tensor]) -> bool:
    """Whether RoPE tables are one [N, d] table pair for the whole batch (what the fused CPU RoPE kernels take);
    per-sample tables [B, N, d] (the kept rows after patch dropout) run the plain `apply_rope_packed_qkv`."""
    return rope[0].ndim == 2


def project_with_residual(projection: nn.Layer, x: paddle.Tensor, dropout: Optional[nn.Layer],
                          residual: Optional[paddle.Tensor]) -> paddle.Tensor:
    """dropout(projection(x)) + residual; a plain Linear without dropout is one GEMM with the bias and the
    residual in its epilogue where the fused CPU kernels run."""
    if dropout is None and type(projection) is nn.Linear and cpu_kernels.enabled_for(x):
        return cpu_kernels.linear(x, projection.weight, projection.bias, residual)
    out = projection(x)
    if dropout is not None:
        out = dropout(out)
    return out if residual is None else out + residual


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
        residual: Optional[paddle.Tensor] = None,
    ) -> paddle.Tensor:
        """Attention output [B, N, dim] (plus `residual`, added inside the output projection's GEMM where the fused
        CPU kernels run); with `return_cls_attention`, (output, cls_attention [B, H, N]): see
        `forward_with_cls_attention` (no RoPE, mask or residual then).

        `rope`: (cos, sin) tables [N, head_dim] shared by the batch, or per-sample [B, N, head_dim] (each sample's
        kept positions after patch dropout: `VisionRotaryEmbedding.kept_tables`); the fused CPU RoPE kernels take
        shared tables only, so per-sample ones run the plain rotation (same numbers, one more pass)."""
        if return_cls_attention:
            if rope is not None or attn_mask is not None or residual is not None:
                raise NotImplementedError("return_cls_attention supports attention without RoPE, masks or residual")
            return self.forward_with_cls_attention(x)
        b, n, _ = x.shape
        if _use_fused_attention(x) and attn_mask is None:
            q = self.q_proj(x).reshape([b, n, self.num_heads, self.head_dim])
            k = self.k_proj(x).reshape([b, n, self.num_heads, self.head_dim])
            v = self.v_proj(x).reshape([b, n, self.num_heads, self.head_dim])
            if rope is not None:  # rotate in [B, N, H, d]: tables ([N, d] or per-sample [B, N, d]) over heads
                cos, sin = rope[0].unsqueeze(-2), rope[1].unsqueeze(-2)
                q, k = apply_rope_elementwise(q, cos, sin), apply_rope_elementwise(k, cos, sin)
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop, training=self.training, scale=self.scale
            )
        else:
            # One GEMM for q, k and v packed as [B, N, 3, H, d]; reshape sizes 0 ("keep") leave the batch and
            # sequence dims symbolic so exported graphs stay batch-agnostic and fusable.
            if type(self.q_proj) is nn.Linear:
                qkv = cpu_kernels.linear(x, self._qkv_weight(), self._qkv_bias())
            else:  # tensor-parallel (or otherwise wrapped) projections keep their own forward
                qkv = paddle.stack([self.q_proj(x), self.k_proj(x), self.v_proj(x)], axis=2)
            qkv = qkv.reshape([0, 0, 3, self.num_heads, self.head_dim])
            if self._use_cpu_fused_attention(qkv, attn_mask):
                if rope is not None:
                    rotated = cpu_kernels.rope_qkv(qkv, *rope) if shared_rope_tables(rope) else None
                    qkv = rotated if rotated is not None else apply_rope_packed_qkv(qkv, *rope)
                out = cpu_fused_attention(qkv, self.scale, self.num_heads)
            else:
                out = self._matmul_attention(qkv, rope, attn_mask)
        return self._project(out, residual)

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
        split = None
        if rope is not None and shared_rope_tables(rope):
            split = cpu_kernels.rope_qkv_split(qkv, *rope, q_scale=self.scale)
        if split is not None:  # one pass: q and k rotated, q scaled, all three in [B, H, N, d]
            q, k, v = split
        else:
            if rope is not None:
                qkv = apply_rope_packed_qkv(qkv, *rope)
            if paddle.in_dynamic_mode():
                # Eager: three [B, N, H, d] -> [B, H, N, d] transposes. Paddle's CPU strided-copy kernels make one
                # 5-D transpose plus slices ~1.6x slower per training step (Ti, batch 4: 0.88 s vs 1.39 s fwd+bwd).
                q, k, v = (t.transpose([0, 2, 1, 3]) for t in paddle.unbind(qkv, axis=2))
            else:
                # Static graphs: one transpose to [3, B, H, N, d] (slightly faster in Paddle Inference)
                qkv = qkv.transpose([2, 0, 3, 1, 4])
                q, k, v = qkv[0], qkv[1], qkv[2]
            q = q * self.scale
        attn = paddle.matmul(q, k, transpose_y=True)
        if attn_mask is not None:
            if attn_mask.dtype == paddle.bool:
                attn = paddle.where(attn_mask, attn, paddle.full_like(attn, float("-inf")))
            else:
                attn = attn + attn_mask.astype(attn.dtype)
            attn = F.softmax(attn, axis=-1)  # masked entries must come out exactly 0
        else:
            attn = cpu_kernels.softmax(attn)
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

    def _project(self, out: paddle.Tensor, residual: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """Merged heads [B, N, H, d] -> inner_attn_ln -> proj -> proj_drop (-> + residual)."""
        out = out.reshape([0, 0, self.num_heads * self.head_dim])
        if self.inner_attn_ln is not None:
            out = self.inner_attn_ln(out)
        return project_with_residual(self.output_projection, out, self.proj_drop, residual)
