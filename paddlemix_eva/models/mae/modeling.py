"""MAE: the masked autoencoder of pre-training and the plain ViT it hands to fine-tuning and linear probing.

Both are built from the shared trunk (`ViTTrunkMixin`: patch embedding, cls token, blocks of `layers.Block` with
GELU MLPs and a bias on q, k and v). Parameter names follow the official MAE code (`decoder_embed`, `mask_token`,
`decoder_blocks`, `decoder_norm`, `decoder_pred`, `fc_norm`, `head`), with PaddleMIX's split `q_proj/k_proj/v_proj`
inside attention, so converted checkpoints keep recognisable keys.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers import (
    Attention,
    Block,
    init_ones,
    init_torch_default,
    init_trunc_normal,
    init_xavier_uniform,
    init_xavier_uniform_flat,
    init_zeros,
    resample_checkpoint_pos_embed,
)
from paddlemix_eva.models.mae.configuration import MAEConfig, MAEVisionTransformerConfig
from paddlemix_eva.models.mae.masking import random_masking
from paddlemix_eva.models.mae.patches import normalize_patches, patchify
from paddlemix_eva.models.mae.pos_embed import sincos_2d_table
from paddlemix_eva.models.modeling_utils import ConvertedWeightsMixin, EVAPretrainedModel
from paddlemix_eva.models.tokens import gather_tokens
from paddlemix_eva.models.trunk import ViTTrunkMixin

logger = logging.getLogger(__name__)


class MAEPretrainedModel(ConvertedWeightsMixin, ViTTrunkMixin, EVAPretrainedModel):
    """What the classifier and the autoencoder share: the trunk, recompute switch and weight resolution."""

    config_class = MAEVisionTransformerConfig
    base_model_prefix = "mae"

    def _build_encoder(self, config: MAEVisionTransformerConfig, learnable_pos_embed: bool) -> None:
        config.validate()  # fields overridden after construction (from_pretrained(..., image_size=...)) included
        spec = config.trunk_spec()
        self._build_trunk(dataclasses.replace(spec, use_abs_pos_emb=learnable_pos_embed))
        if not learnable_pos_embed:
            del self.pos_embed  # the trunk's placeholder (None): the table is a fixed buffer instead
            self.register_buffer("pos_embed", self._fixed_table(spec.dim), persistable=True)
        #: per-block activation recompute in training (PaddleNLP's `--recompute` sets it)
        self.enable_recompute = False

    def _fixed_table(self, width: int) -> paddle.Tensor:
        """[1, 1 + L, width] sin-cos table, frozen (stored in checkpoints, never trained)."""
        table = paddle.to_tensor(sincos_2d_table(width, self.config.grid_size)[None])
        table.stop_gradient = True
        return table

    def _encode_patches(self, image: paddle.Tensor) -> paddle.Tensor:
        self.patch_embed.check_input(image, type(self).__name__)
        return self.patch_embed(image)

    @classmethod
    def how_to_train(cls, entry) -> str:
        return ("upstream published only the encoders (`mae_pretrain_vit_*`); pre-train it with "
                "examples/mae/run_mae_pretrain_dist.py")


class MAEVisionTransformer(MAEPretrainedModel):
    """ViT classifier of MAE fine-tuning (mean-pooled patch tokens -> `fc_norm` -> `head`) and linear probing
    (cls token after `norm` -> BatchNorm without affine -> `head`); loads MAE pre-training checkpoints."""

    is_classifier = True

    _optional_checkpoint_keys = (r"^head\.", r"^fc_norm\.", r"^head_norm\.")
    # decoder / mask token of pre-training, and whichever pooling norm or head this configuration does not use
    _dropped_checkpoint_keys = (r"^decoder_", r"^mask_token$", r"^norm\.", r"^fc_norm\.", r"^head\.", r"^head_norm\.")

    def __init__(self, config: MAEVisionTransformerConfig):
        super().__init__(config)
        self._build_encoder(config, learnable_pos_embed=True)
        self.fc_norm = self.norm_layer(config.embed_dim) if config.global_pool else None
        self.norm = None if config.global_pool else self.norm_layer(config.embed_dim)
        self.head_norm = (
            nn.BatchNorm1D(config.embed_dim, weight_attr=False, bias_attr=False, epsilon=1e-6)
            if config.linear_probe
            else None
        )
        self.head = nn.Linear(config.embed_dim, config.num_classes) if config.num_classes > 0 else None
        self.init_weights()

    def _init_parameters(self) -> None:
        self._init_trunk(std=0.02)
        if self.head is not None:
            init_trunc_normal(self.head.weight, self.config.head_init_std)
            init_zeros(self.head.bias)

    def no_weight_decay(self) -> List[str]:
        return ["pos_embed", "cls_token"]

    def freeze_backbone(self) -> None:
        """Linear probing: only `head` trains (the BatchNorm before it keeps running statistics only)."""
        for name, param in self.named_parameters():
            param.stop_gradient = not name.startswith("head.")

    def forward_features(self, image: paddle.Tensor) -> paddle.Tensor:
        """All tokens [B, 1 + N, D] after the last block (before the pooling norm)."""
        return self._forward_blocks(self._tokens(self._encode_patches(image)), recompute=self.enable_recompute)

    def pool(self, tokens: paddle.Tensor) -> paddle.Tensor:
        if self.fc_norm is not None:
            return self.fc_norm(tokens[:, 1:].mean(axis=1))
        return self.norm(tokens)[:, 0]

    def forward_head(self, tokens: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        features = self.pool(tokens)
        if pre_logits or self.head is None:
            return features
        if self.head_norm is not None:
            features = self.head_norm(features)
        return self.head(features)

    def extract_feat(self, image: paddle.Tensor, patch_tokens: bool = False) -> paddle.Tensor:
        """Pooled features [B, D] (before any linear-probe BatchNorm), or normalised patch tokens [B, N, D]."""
        tokens = self.forward_features(image)
        if patch_tokens:
            return (self.fc_norm or self.norm)(tokens[:, 1:])
        return self.pool(tokens)

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        return self.forward_head(self.forward_features(image))

    @classmethod
    def adapt_state_dict(
        cls, state_dict: Dict[str, np.ndarray], config: MAEVisionTransformerConfig, source: str
    ) -> Dict[str, np.ndarray]:
        """A head for another label set is dropped (a fresh one is initialised), a pos_embed for another grid is
        resampled bicubically; both are logged."""
        state_dict = super().adapt_state_dict(state_dict, config, source)
        head = state_dict.get("head.weight")
        if head is not None and list(head.shape) != [config.embed_dim, config.num_classes]:
            logger.info("%s: dropping its %d-class head (this model has %d classes)", source, head.shape[-1],
                        config.num_classes)
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("head.", "head_norm."))}
        resample_checkpoint_pos_embed(state_dict, "pos_embed", config.grid_size, config.embed_dim, source)
        return state_dict


class MAEForPretraining(MAEPretrainedModel):
    """Masked autoencoder: the encoder sees the cls token and the visible quarter of the patches; the decoder
    fills the removed ones with a shared `mask_token` and predicts their pixels."""

    config_class = MAEConfig
    finetunes_into = "mae_vit"
    _dropped_checkpoint_keys = (r"^fc_norm\.", r"^head\.", r"^head_norm\.")

    def __init__(self, config: MAEConfig):
        super().__init__(config)
        self._build_encoder(config, learnable_pos_embed=False)
        self.norm = self.norm_layer(config.embed_dim)
        spec = config.decoder_spec()
        self.decoder_embed = nn.Linear(config.embed_dim, spec.dim)
        self.mask_token = self.create_parameter([1, 1, spec.dim], default_initializer=nn.initializer.Constant(0.0))
        self.register_buffer("decoder_pos_embed", self._fixed_table(spec.dim), persistable=True)
        self.decoder_blocks = nn.LayerList(
            [
                Block(spec.dim, spec.num_heads, spec.mlp_hidden_dim, qkv_bias=True, k_bias=True, swiglu=False,
                      norm_layer=self.norm_layer)
                for _ in range(spec.depth)
            ]
        )
        self.decoder_norm = self.norm_layer(spec.dim)
        self.decoder_pred = nn.Linear(spec.dim, config.patch_dim)
        self.init_weights()

    def _init_parameters(self) -> None:
        """Upstream: Xavier-uniform Linears (q/k/v with the bound of the fused 3x-wide qkv), zero biases, patch
        kernel Xavier-uniform on its flattened view, conv bias PyTorch's default, tokens N(0, 0.02), norms 1/0."""
        fused_qkv = {id(proj) for attn in self.sublayers() if isinstance(attn, Attention)
                     for proj in (attn.q_proj, attn.k_proj, attn.v_proj)}
        for layer in self.sublayers(include_self=False):
            if isinstance(layer, nn.Linear):
                fan_in, fan_out = layer.weight.shape
                init_xavier_uniform(layer.weight, fan_in, fan_out * (3 if id(layer) in fused_qkv else 1))
                init_zeros(layer.bias)
            elif isinstance(layer, nn.LayerNorm):
                init_ones(layer.weight)
                init_zeros(layer.bias)
        conv = self.patch_embed.proj
        init_xavier_uniform_flat(conv.weight)
        init_torch_default(conv.bias, int(np.prod(conv.weight.shape[1:])))
        init_trunc_normal(self.cls_token, 0.02)
        init_trunc_normal(self.mask_token, 0.02)

    def no_weight_decay(self) -> List[str]:
        """Upstream decays cls_token and mask_token (3-D, empty skip list); the position tables are not trained."""
        return []

    @classmethod
    def image_encoder(cls, config: MAEConfig):
        """The cost of one pre-training forward: encoder on the visible tokens, decoder on all of them."""
        model = cls(config)
        return model, model

    # ------------------------------------------------------------------------------------- forward
    def forward_encoder(self, image: paddle.Tensor, mask_ratio: float, noise: Optional[paddle.Tensor] = None):
        """(latent [N, 1 + len_keep, D] after `norm`, `MaskedTokens`)."""
        pos = self.pos_embed.astype(image.dtype)
        masked = random_masking(self._encode_patches(image) + pos[:, 1:], mask_ratio, noise)
        cls = (self.cls_token + pos[:, :1]).expand([image.shape[0], -1, -1])
        x = paddle.concat([cls, masked.visible], axis=1)
        return self.norm(self._forward_blocks(x, recompute=self.enable_recompute)), masked

    def forward_decoder(self, latent: paddle.Tensor, ids_restore: paddle.Tensor) -> paddle.Tensor:
        """Predicted pixels [N, L, p*p*C] of every patch (raster order, `patchify` layout)."""
        x = self.decoder_embed(latent)
        batch, kept, width = x.shape[0], x.shape[1] - 1, x.shape[2]
        fill = self.mask_token.astype(x.dtype).expand([batch, ids_restore.shape[1] - kept, width])
        patches = gather_tokens(paddle.concat([x[:, 1:], fill], axis=1), ids_restore)
        x = paddle.concat([x[:, :1], patches], axis=1) + self.decoder_pos_embed.astype(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def reconstruction_target(self, image: paddle.Tensor) -> paddle.Tensor:
        target = patchify(image.astype("float32"), self.config.patch_size)
        return normalize_patches(target) if self.config.norm_pix_loss else target

    def reconstruction_loss(self, image: paddle.Tensor, pred: paddle.Tensor, mask: paddle.Tensor) -> paddle.Tensor:
        """Mean squared error per patch, averaged over the masked patches of the batch only (float32)."""
        per_patch = ((pred.astype("float32") - self.reconstruction_target(image)) ** 2).mean(axis=-1)
        mask = mask.astype("float32")
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self, image: paddle.Tensor, noise: Optional[paddle.Tensor] = None, mask_ratio: Optional[float] = None
    ) -> Dict[str, paddle.Tensor]:
        """{"loss", "pred" [N, L, p*p*C], "mask" [N, L] (1 = removed), "ids_restore" [N, L]}. `noise` [N, L]
        fixes the masking (smallest noise kept); `mask_ratio` overrides the config's."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        latent, masked = self.forward_encoder(image, ratio, noise)
        pred = self.forward_decoder(latent, masked.ids_restore)
        loss = self.reconstruction_loss(image, pred, masked.mask)
        return {"loss": loss, "pred": pred, "mask": masked.mask, "ids_restore": masked.ids_restore}
