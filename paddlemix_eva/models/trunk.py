"""The ViT trunk every vision tower shares: patch embedding, cls token, absolute pos_embed, 2D RoPE, blocks.

EVA-02 (classifier and MIM student), the EVA-CLIP vision towers and MAE's encoder differ only in the values of a
`TrunkSpec` and in what they put on top; the attribute names (`patch_embed`, `cls_token`, `pos_embed`, `blocks`)
are PaddleMIX's state-dict keys.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers import (
    Block,
    DropPath,
    PatchDropout,
    PatchEmbed,
    VisionRotaryEmbedding,
    init_trunc_normal,
    init_vit_layer,
    init_xavier_uniform_flat,
    init_zeros,
    make_layer_norm,
    resample_abs_pos_embed,
    run_blocks,
)
from paddlemix_eva.layers.drop import check_patch_dropout


class PatchGrid:
    """`grid_size` and `num_patches` of anything with `image_size` and `patch_size` (square inputs)."""

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


@dataclass(frozen=True)
class TrunkSpec(PatchGrid):
    """Shapes and switches of a ViT trunk (derived from a model config; never stored)."""

    image_size: int
    patch_size: int
    in_chans: int
    dim: int
    depth: int
    num_heads: int
    mlp_hidden_dim: int
    head_dim: Optional[int] = None
    qkv_bias: bool = True
    k_bias: bool = False
    qk_scale: Optional[float] = None
    swiglu: bool = True
    ffn_ln: bool = False
    inner_attn_ln: bool = False
    postnorm: bool = False
    rope: bool = True
    rope_pt_seq_len: Optional[int] = 16
    use_abs_pos_emb: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    #: FLIP patch dropout in training (`ViTTrunkMixin._forward_trunk`); only towers whose config has the field
    patch_dropout: float = 0.0
    norm_eps: float = 1e-6


def check_patch_grid(image_size: int, patch_size: int) -> None:
    """Refuse an input size the patch grid does not tile, naming the nearest sizes that it does."""
    if image_size % patch_size:
        grid = image_size // patch_size
        raise ValueError(
            f"image_size {image_size} is not a multiple of patch_size {patch_size}: the patch grid must tile the "
            f"image (e.g. image_size {max(grid, 1) * patch_size} or {(grid + 1) * patch_size})"
        )


class ViTShapeMixin(PatchGrid):
    """Derived shapes and the shape checks of a ViT config with `image_size`, `patch_size`, `embed_dim`,
    `num_heads`, `layers`, `mlp_ratio` (and dropout rates), so each family's config only adds its own fields."""

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def check_vit_shape(self) -> None:
        check_patch_grid(self.image_size, self.patch_size)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    def plain_vit_trunk_spec(self) -> TrunkSpec:
        """The trunk of a pre-norm ViT with GELU MLP and q/k/v biases, no RoPE (DeiT, MAE's encoder)."""
        return TrunkSpec(
            image_size=self.image_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            dim=self.embed_dim,
            depth=self.layers,
            num_heads=self.num_heads,
            mlp_hidden_dim=self.mlp_hidden_dim,
            qkv_bias=True,
            k_bias=True,
            swiglu=False,
            rope=False,
            drop_rate=self.drop_rate,
            attn_drop_rate=self.attn_drop_rate,
            drop_path_rate=self.drop_path_rate,
        )


class ViTTrunkMixin:
    """Builds and runs the trunk on the layer it is mixed into (a PaddleNLP model or a plain `nn.Layer`)."""

    def _build_trunk(self, spec: TrunkSpec) -> None:
        self.trunk_spec = spec
        self.norm_layer = make_layer_norm(spec.norm_eps)
        self.patch_embed = PatchEmbed(spec.image_size, spec.patch_size, spec.in_chans, spec.dim)
        zeros = nn.initializer.Constant(0.0)
        self.cls_token = self.create_parameter([1, 1, spec.dim], default_initializer=zeros)
        if spec.use_abs_pos_emb:
            self.pos_embed = self.create_parameter([1, spec.num_patches + 1, spec.dim], default_initializer=zeros)
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(spec.drop_rate) if spec.drop_rate > 0 else None
        self.patch_dropout = PatchDropout(spec.patch_dropout) if spec.patch_dropout > 0 else None
        head_dim = spec.head_dim or spec.dim // spec.num_heads
        if spec.rope:
            self.rope = VisionRotaryEmbedding(head_dim, (spec.grid_size, spec.grid_size), spec.rope_pt_seq_len)
        else:
            self.rope = None
        dpr = np.linspace(0, spec.drop_path_rate, spec.depth).tolist()
        self.blocks = nn.LayerList(
            [
                Block(
                    spec.dim,
                    spec.num_heads,
                    spec.mlp_hidden_dim,
                    head_dim=spec.head_dim,
                    qkv_bias=spec.qkv_bias,
                    k_bias=spec.k_bias,
                    qk_scale=spec.qk_scale,
                    drop=spec.drop_rate,
                    attn_drop=spec.attn_drop_rate,
                    drop_path=dpr[i],
                    norm_layer=self.norm_layer,
                    swiglu=spec.swiglu,
                    subln=spec.ffn_ln,
                    inner_attn_ln=spec.inner_attn_ln,
                    postnorm=spec.postnorm,
                )
                for i in range(spec.depth)
            ]
        )

    # -------------------------------------------------------------------------------- forward
    def _tokens(self, patches: paddle.Tensor) -> paddle.Tensor:
        """Prepend cls, add pos_embed: [B, N, D] patch embeddings -> [B, 1 + N, D] tokens."""
        cls = self.cls_token.astype(patches.dtype).expand([patches.shape[0], -1, -1])
        x = paddle.concat([cls, patches], axis=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed.astype(x.dtype)
        if self.pos_drop is not None:
            x = self.pos_drop(x)
        return x

    def _drop_patches(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        """FLIP patch dropout on tokens [B, 1 + N, D] (training with `patch_dropout` > 0 only): (tokens
        [B, 1 + K, D], keep_index [B, K] of the kept patches); otherwise (x itself, None). See `PatchDropout`."""
        if self.patch_dropout is None:
            return x, None
        return self.patch_dropout(x)

    def _forward_trunk(self, patches: paddle.Tensor, recompute: bool = False) -> paddle.Tensor:
        """Patch embeddings [B, N, D] -> cls + pos_embed -> patch dropout (training) -> blocks: [B, 1 + K, D]
        tokens, K = N unless patches were dropped. The abs pos_embed is added before the selection and the RoPE
        rows follow each sample's kept patches, so every kept token keeps its own position."""
        x, keep_index = self._drop_patches(self._tokens(patches))
        return self._forward_blocks(x, recompute=recompute, keep_index=keep_index)

    def _forward_blocks(self, x: paddle.Tensor, recompute: bool = False,
                        keep_index: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        """The blocks on tokens x; `keep_index` [B, K] (from `_drop_patches`) when x holds only those patches:
        the blocks then get per-sample RoPE tables [B, 1 + K, d] of the kept positions."""
        rope = self.rope.kept_tables(keep_index) if self.rope is not None else None
        return run_blocks(self.blocks, x, rope, recompute=recompute and self.training)

    def set_drop_path_rate(self, rate: float) -> None:
        """Stochastic depth rising linearly from 0 at the first block to `rate` at the last."""
        for blk, block_rate in zip(self.blocks, np.linspace(0, rate, len(self.blocks)).tolist()):
            blk.drop_path = DropPath(block_rate) if block_rate > 0 else None
        config = getattr(self, "config", None)
        if config is not None and hasattr(config, "drop_path_rate"):
            config.drop_path_rate = float(rate)

    def set_patch_dropout(self, rate: float) -> None:
        """FLIP patch dropout of `rate` of the patch tokens in training from now on (0 switches it off; eval mode
        never drops), e.g. `model.visual.set_patch_dropout(0.5)` to fine-tune a pretrained EVA-CLIP as the paper
        does. Updates the config (saved with the model) and `trunk_spec`. Only towers whose config has a
        `patch_dropout` field (EVA-CLIP's) run the dropout; others refuse."""
        rate = check_patch_dropout(rate)
        config = getattr(self, "config", None)
        if config is None or not hasattr(config, "patch_dropout"):
            raise ValueError(f"{type(self).__name__} does not support patch dropout (its config has no "
                             "`patch_dropout`; the EVA-CLIP vision towers do)")
        self.patch_dropout = PatchDropout(rate) if rate > 0 else None
        self.trunk_spec = dataclasses.replace(self.trunk_spec, patch_dropout=rate)
        config.patch_dropout = rate

    # ------------------------------------------------------------------------------ layer decay
    def layer_ids(self) -> Dict[str, int]:
        """Depth of every parameter for layer-wise LR decay: the embeddings 0, block i i + 1, whatever follows the
        blocks (final norms, heads) L + 1. Read from the module tree, not from parameter names."""
        embedding = {id(p) for p in self.patch_embed.parameters()}
        embedding |= {id(getattr(self, name)) for name in ("cls_token", "pos_embed", "mask_token")
                      if getattr(self, name, None) is not None}
        block_of = {id(p): i + 1 for i, blk in enumerate(self.blocks) for p in blk.parameters()}
        last = len(self.blocks) + 1
        return {name: 0 if id(p) in embedding else block_of.get(id(p), last) for name, p in self.named_parameters()}

    # ---------------------------------------------------------------------------- input size
    def set_input_size(self, image_size: int) -> None:
        """Rebuild for another input size: pos_embed bicubic-resampled (no antialias), RoPE tables rebuilt, and
        the config (the object the model was built from, a tower's inside a joint config) updated and checked."""
        config = self.config
        if image_size == config.image_size:
            return
        self._resize_trunk(image_size)
        config.image_size = image_size
        config.validate()

    def _resize_trunk(self, image_size: int) -> None:
        """pos_embed bicubic-resampled (no antialias) to the new grid, RoPE tables rebuilt, input check updated."""
        patch = self.patch_embed.patch_size
        check_patch_grid(image_size, patch)
        grid = image_size // patch
        if self.pos_embed is not None:
            with paddle.no_grad():
                resampled = resample_abs_pos_embed(self.pos_embed, (grid, grid))
            new_param = self.create_parameter(resampled.shape, dtype=self.pos_embed.dtype)
            new_param.set_value(resampled)
            new_param.stop_gradient = self.pos_embed.stop_gradient
            self.pos_embed = new_param
        self.patch_embed.image_size = image_size
        if self.rope is not None:
            self.rope.set_grid_size((grid, grid))

    # ---------------------------------------------------------------------------------- init
    def _init_trunk(self, std: float = 0.02, xavier: bool = False, token_bound: float = 2.0) -> None:
        """Linear trunc-normal (or xavier-normal), LayerNorm 1/0, patch kernel trunc-normal (or flattened xavier-
        uniform), cls/pos trunc-normal at `std` truncated at +-`token_bound`."""
        for layer in self.sublayers(include_self=False):
            init_vit_layer(layer, std=std, xavier=xavier)
        conv = self.patch_embed.proj
        if xavier:
            init_xavier_uniform_flat(conv.weight)
        else:
            init_trunc_normal(conv.weight, std)
        init_zeros(conv.bias)
        for param in (self.cls_token, self.pos_embed):
            if param is not None:
                init_trunc_normal(param, std, bound=token_bound)

    def _rescale_residual_projections(self) -> None:
        """Upstream init: the residual output projections of block l (1-based) divided by sqrt(2 l)."""
        with paddle.no_grad():
            for layer_id, blk in enumerate(self.blocks, start=1):
                for linear in (blk.attn.output_projection, blk.mlp.output_projection):
                    linear.weight.set_value(linear.weight / math.sqrt(2.0 * layer_id))

    def _rescale_subln_params(self,
                              fragments: Tuple[str, ...] = ("mlp.fc", "mlp.w", "attn.proj", "attn.v_proj")) -> None:
        """Upstream MIM init for sub-LN models: FFN and attention v/out parameters times sqrt(ln(2 depth))."""
        gain = math.sqrt(math.log(2.0 * len(self.blocks)))
        with paddle.no_grad():
            for name, param in self.named_parameters():
                if any(fragment in name for fragment in fragments):
                    param.set_value(param * gain)
