"""The pre-norm (or post-norm) transformer block every family stacks."""
from __future__ import annotations

from typing import Optional, Tuple

import paddle
import paddle.nn as nn

from paddlemix_eva.layers.attention import Attention
from paddlemix_eva.layers.drop import DropPath
from paddlemix_eva.layers.mlp import Mlp, SwiGLU
from paddlemix_eva.layers.naming import VISION_NAMES, LayerNames
from paddlemix_eva.layers.norm import LayerFactory, make_layer_norm


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
        if self.drop_path is None or not self.training:
            # the residual adds go into the output projections (one GEMM each with the fused CPU kernels)
            x = self.attn(norm1(x), rope, attn_mask, residual=x)
            return self.mlp(norm2(x), residual=x)
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


def run_blocks(blocks, x: paddle.Tensor, *block_args, recompute: bool = False) -> paddle.Tensor:
    """Each block on x in turn (`block_args` passed to every one). `recompute` (training with gradients only):
    each block's activations are dropped after the forward and recomputed in the backward (fleet's non-reentrant
    recompute), trading about a third more compute for memory, as PaddleNLP's `--recompute` asks."""
    recompute = recompute and not x.stop_gradient
    if recompute:
        from paddle.distributed.fleet.utils import recompute as run_recomputed
    for blk in blocks:
        x = run_recomputed(blk, x, *block_args, use_reentrant=False) if recompute else blk(x, *block_args)
    return x
