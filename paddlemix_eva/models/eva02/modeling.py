"""EVA-02: a plain ViT with SwiGLU, sub-LN and 2D RoPE (Fang et al., 2023).

Computes what the official EVA-02 (`asuka`) and timm's `Eva` compute; parameter names are PaddleMIX's.
Two heads share one trunk: `EVA02VisionTransformer` (classifier, mean-pooled patch tokens -> `fc_norm` ->
`head`) and `EVA02VisionTransformerForMIM` (`mask_token`, final `norm`, `lm_head` on masked tokens).
"""
from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ...layers import (
    Block,
    PatchEmbed,
    VisionRotaryEmbedding,
    init_trunc_normal,
    init_vit_layer,
    init_xavier_uniform_flat,
    init_zeros,
    make_layer_norm,
    resample_abs_pos_embed,
    scale_gradient,
)
from ..modeling_utils import EVAPretrainedModel
from .configuration import EVA02VisionTransformerConfig, EVA02VisionTransformerForMIMConfig

logger = logging.getLogger(__name__)

# Name fragments of the residual-branch output projections (upstream's init rescales).
_RESIDUAL_OUT_PROJ = ("attn.proj", "mlp.w3", "mlp.fc2")
_SUBLN_RESCALED = ("mlp.fc", "mlp.w", "attn.proj", "attn.v_proj")


class EVA02PretrainedModel(EVAPretrainedModel):
    """The EVA-02 trunk shared by the classifier and the MIM student (patch embed, cls, pos_embed, RoPE, blocks)."""

    config_class = EVA02VisionTransformerConfig
    base_model_prefix = "eva02_vit"
    #: the patch embedding's gradient scale under `stop_grad_conv1` (upstream: 0 finetune, 0.1 MIM)
    stop_grad_conv1_scale = 0.0

    def _build_trunk(self, config: EVA02VisionTransformerConfig) -> None:
        self.norm_layer = make_layer_norm(1e-6)
        self.patch_embed = PatchEmbed(config.image_size, config.patch_size, config.in_chans, config.embed_dim)
        self.cls_token = self.create_parameter([1, 1, config.embed_dim], default_initializer=nn.initializer.Constant(0.0))
        if config.use_abs_pos_emb:
            self.pos_embed = self.create_parameter(
                [1, config.num_patches + 1, config.embed_dim], default_initializer=nn.initializer.Constant(0.0)
            )
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(config.drop_rate) if config.drop_rate > 0 else None
        if config.rope:
            self.rope = VisionRotaryEmbedding(
                config.head_dim,
                (config.grid_size, config.grid_size),
                pt_seq_len=config.pt_hw_seq_len if config.intp_freq else None,
            )
        else:
            self.rope = None
        dpr = np.linspace(0, config.drop_path_rate, config.layers).tolist()
        self.blocks = nn.LayerList(
            [
                Block(
                    config.embed_dim,
                    config.num_heads,
                    config.mlp_hidden_dim,
                    qkv_bias=config.qkv_bias,
                    qk_scale=config.qk_scale,
                    drop=config.drop_rate,
                    attn_drop=config.attn_drop_rate,
                    drop_path=dpr[i],
                    norm_layer=self.norm_layer,
                    swiglu=config.use_swiglu,
                    subln=config.use_ffn_ln,
                )
                for i in range(config.layers)
            ]
        )

    # ----------------------------------------------------------------------------------- forward
    def _embed(self, image: paddle.Tensor, bool_masked_pos: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        self.patch_embed.check_input(image, type(self).__name__)
        x = self.patch_embed(image)
        if self.config.stop_grad_conv1 and self.training:
            x = scale_gradient(x, self.stop_grad_conv1_scale)
        if bool_masked_pos is not None:
            w = bool_masked_pos.reshape([x.shape[0], -1, 1]).astype(x.dtype)
            x = x * (1.0 - w) + self.mask_token.astype(x.dtype) * w
        cls = self.cls_token.astype(x.dtype).expand([x.shape[0], -1, -1])
        x = paddle.concat([cls, x], axis=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed.astype(x.dtype)
        if self.pos_drop is not None:
            x = self.pos_drop(x)
        return x

    def _forward_blocks(self, x: paddle.Tensor) -> paddle.Tensor:
        rope = self.rope.tables() if self.rope is not None else None
        recompute = self.config.enable_recompute and self.training and not x.stop_gradient
        for blk in self.blocks:
            if recompute:
                from paddle.distributed.fleet.utils import recompute as run_recomputed

                x = run_recomputed(blk, x, rope, use_reentrant=False)
            else:
                x = blk(x, rope)
        return x

    def forward_features(
        self, image: paddle.Tensor, bool_masked_pos: Optional[paddle.Tensor] = None
    ) -> paddle.Tensor:
        """All tokens [B, 1 + N, D] after the last block (before any final norm)."""
        return self._forward_blocks(self._embed(image, bool_masked_pos))

    # ------------------------------------------------------------------------------ input size
    def set_input_size(self, image_size: int) -> None:
        """Rebuild for another input size: pos_embed bicubic-resampled (no antialias), RoPE tables rebuilt."""
        config = self.config
        if image_size % config.patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {config.patch_size}")
        if image_size == config.image_size:
            return
        grid = image_size // config.patch_size
        if self.pos_embed is not None:
            with paddle.no_grad():
                resampled = resample_abs_pos_embed(self.pos_embed, (grid, grid))
            new_param = self.create_parameter(resampled.shape, dtype=self.pos_embed.dtype)
            new_param.set_value(resampled)
            new_param.stop_gradient = self.pos_embed.stop_gradient
            self.pos_embed = new_param
        config.image_size = image_size
        self.patch_embed.image_size = image_size
        if self.rope is not None:
            self.rope.set_grid_size((grid, grid))

    @classmethod
    def adapt_state_dict(
        cls, state_dict: Dict[str, np.ndarray], config: EVA02VisionTransformerConfig, source: str
    ) -> Dict[str, np.ndarray]:
        """A checkpoint at another grid loads only by interpolating its pos_embed, and never silently."""
        state_dict = super().adapt_state_dict(state_dict, config, source)
        pos = state_dict.get("pos_embed")
        expected = config.num_patches + 1
        if pos is not None and pos.ndim == 3 and pos.shape[1] != expected and pos.shape[2] == config.embed_dim:
            old_side = int(round(math.sqrt(pos.shape[1] - 1)))
            if old_side * old_side == pos.shape[1] - 1:
                logger.warning(
                    "%s: pos_embed is for a %dx%d patch grid (%d px at patch %d); interpolating it bicubically to "
                    "the %dx%d grid of image_size=%d",
                    source,
                    old_side,
                    old_side,
                    old_side * config.patch_size,
                    config.patch_size,
                    config.grid_size,
                    config.grid_size,
                    config.image_size,
                )
                resampled = resample_abs_pos_embed(
                    paddle.to_tensor(np.asarray(pos, dtype=np.float32)), (config.grid_size, config.grid_size)
                )
                state_dict["pos_embed"] = resampled.numpy().astype(pos.dtype)
        return state_dict

    # ---------------------------------------------------------------------------------- init
    def _init_trunk(self) -> None:
        config = self.config
        for layer in self.sublayers(include_self=False):
            init_vit_layer(layer, std=config.init_std, xavier=config.xavier_normal_init)
        conv = self.patch_embed.proj
        if config.xavier_normal_init:
            init_xavier_uniform_flat(conv.weight)
        else:
            init_trunc_normal(conv.weight, config.init_std)
        init_zeros(conv.bias)

    def _rescale_residual_projections(self) -> None:
        """Upstream finetune init: the output projections of block l (1-based) divided by sqrt(2 l)."""
        with paddle.no_grad():
            for layer_id, blk in enumerate(self.blocks, start=1):
                for linear in (blk.attn.proj, blk.mlp.out_proj):
                    linear.weight.set_value(linear.weight / math.sqrt(2.0 * layer_id))

    def _rescale_subln_params(self) -> None:
        """Upstream MIM init for sub-LN models (B/L): scale the FFN and attn v/proj parameters by sqrt(ln(2 L))."""
        gain = math.sqrt(math.log(2.0 * self.config.layers))
        with paddle.no_grad():
            for name, param in self.named_parameters():
                if any(fragment in name for fragment in _SUBLN_RESCALED):
                    param.set_value(param * gain)


class EVA02VisionTransformer(EVA02PretrainedModel):
    """EVA-02 image classifier."""

    # Keys a checkpoint may lack (a fresh head for a new label set); keys dropped on purpose (MIM-only, and the
    # MIM student's final `norm`, which a mean-pooling classifier does not have; only applies when not expected).
    _optional_checkpoint_keys = (r"^head\.", r"^fc_norm\.", r"^norm\.")
    _dropped_checkpoint_keys = (r"^mask_token$", r"^lm_head\.", r"^norm\.")

    def __init__(self, config: EVA02VisionTransformerConfig):
        super().__init__(config)
        self._build_trunk(config)
        if config.use_mean_pooling:
            self.norm = None
            self.fc_norm = self.norm_layer(config.embed_dim)
        else:
            self.norm = self.norm_layer(config.embed_dim)
            self.fc_norm = None
        self.head = nn.Linear(config.embed_dim, config.num_classes) if config.num_classes > 0 else None
        self.init_weights()

    def _init_parameters(self) -> None:
        config = self.config
        self._init_trunk()
        init_trunc_normal(self.cls_token, config.init_std)
        if self.pos_embed is not None:
            init_trunc_normal(self.pos_embed, config.init_std)
        self._rescale_residual_projections()
        if self.head is not None:
            with paddle.no_grad():
                self.head.weight.set_value(self.head.weight * config.init_scale)
                self.head.bias.set_value(self.head.bias * config.init_scale)

    def no_weight_decay(self) -> List[str]:
        return ["pos_embed", "cls_token"]

    def forward_head(self, tokens: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        if self.fc_norm is not None:
            x = self.fc_norm(tokens[:, 1:].mean(axis=1))
        else:
            x = self.norm(tokens)[:, 0]
        if pre_logits or self.head is None:
            return x
        return self.head(x)

    def extract_feat(self, image: paddle.Tensor, patch_tokens: bool = False) -> paddle.Tensor:
        """Pooled features [B, D] (what `head` sees), or normalised patch tokens [B, N, D] with `patch_tokens`."""
        tokens = self.forward_features(image)
        if patch_tokens:
            norm = self.fc_norm if self.fc_norm is not None else self.norm
            return norm(tokens[:, 1:])
        return self.forward_head(tokens, pre_logits=True)

    def forward(self, image: paddle.Tensor, return_patch_tokens: bool = False) -> paddle.Tensor:
        if return_patch_tokens:
            return self.extract_feat(image, patch_tokens=True)
        return self.forward_head(self.forward_features(image))


class EVA02VisionTransformerForMIM(EVA02PretrainedModel):
    """EVA-02 masked-image-modeling student: predicts teacher features at masked patches."""

    config_class = EVA02VisionTransformerForMIMConfig
    stop_grad_conv1_scale = 0.1
    _optional_checkpoint_keys = (r"^lm_head\.",)
    _dropped_checkpoint_keys = (r"^head\.", r"^fc_norm\.")

    def __init__(self, config: EVA02VisionTransformerForMIMConfig):
        super().__init__(config)
        self._build_trunk(config)
        self.mask_token = self.create_parameter(
            [1, 1, config.embed_dim], default_initializer=nn.initializer.Constant(0.0)
        )
        self.norm = self.norm_layer(config.embed_dim)
        self.lm_head = nn.Linear(config.embed_dim, config.predict_feature_dim)
        self.init_weights()

    def _init_parameters(self) -> None:
        config = self.config
        self._init_trunk()
        for param in (self.cls_token, self.pos_embed, self.mask_token):
            if param is not None:  # upstream pre-training: truncated at +-1 std
                init_trunc_normal(param, config.init_std, bound=config.init_std)
        if config.use_ffn_ln:
            self._rescale_subln_params()

    def no_weight_decay(self) -> List[str]:
        return ["pos_embed", "cls_token", "mask_token"]

    def forward(
        self, image: paddle.Tensor, bool_masked_pos: paddle.Tensor, return_all_tokens: bool = False
    ) -> paddle.Tensor:
        """Features [M, predict_feature_dim] of the M masked patches of the batch (raster order per image), or
        of every patch [B, N, predict_feature_dim] with `return_all_tokens`."""
        expected = [image.shape[0], self.config.num_patches]
        if int(np.prod(bool_masked_pos.shape)) != expected[0] * expected[1]:
            raise ValueError(
                f"bool_masked_pos must hold one flag per patch, {expected[0]}x{self.config.grid_size}x"
                f"{self.config.grid_size}; got shape {list(bool_masked_pos.shape)}"
            )
        mask = bool_masked_pos.reshape(expected).astype("bool")
        tokens = self.norm(self.forward_features(image, mask))[:, 1:]
        if return_all_tokens:
            return self.lm_head(tokens)
        return self.lm_head(tokens[mask])

