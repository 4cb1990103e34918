"""Configurations of MAE (He et al., 2022): the plain ViT classifier of fine-tuning / linear probing, and the
masked autoencoder of pre-training (the same encoder plus a narrow decoder). Named sizes live in `zoo_table.py`."""
from __future__ import annotations

import dataclasses
import logging

from paddlemix_eva.models.configuration_utils import IMAGENET_PREPROCESSING, ImageClassifierConfig
from paddlemix_eva.models.mae.masking import check_mask_ratio, num_kept_tokens
from paddlemix_eva.models.trunk import TrunkSpec, ViTShapeMixin

logger = logging.getLogger(__name__)

#: fields only the pre-training model has; a pre-training config.json loads into the classifier without them
PRETRAINING_ONLY_FIELDS = ("decoder_embed_dim", "decoder_layers", "decoder_num_heads", "mask_ratio", "norm_pix_loss")


class MAEVisionTransformerConfig(ViTShapeMixin, ImageClassifierConfig):
    """Plain pre-norm ViT (GELU MLP, qkv with bias, LayerNorm eps 1e-6, learnable pos_embed).

    Pooling: `global_pool` averages the patch tokens and applies `fc_norm` (the fine-tuning recipe), otherwise the
    cls token after the final `norm`. `linear_probe` puts a BatchNorm without affine parameters before `head`.
    Evaluation preprocessing defaults to MAE's: ImageNet mean / std, 0.875 centre crop, bicubic.
    """

    model_type = "mae_vit"
    preprocessing_defaults = IMAGENET_PREPROCESSING

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: bool = True,
        linear_probe: bool = False,
        head_init_std: float = 2e-5,
        **kwargs,
    ):
        dropped = sorted(k for k in PRETRAINING_ONLY_FIELDS if kwargs.pop(k, None) is not None)
        if dropped:
            logger.info("%s: ignoring the pre-training fields %s", type(self).__name__, dropped)
        kwargs.setdefault("return_dict", True)
        super().__init__(**kwargs)
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.layers = layers
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.drop_path_rate = drop_path_rate
        self.global_pool = global_pool
        self.linear_probe = linear_probe
        self.head_init_std = head_init_std
        self.validate()

    @property
    def patch_dim(self) -> int:
        """Length of one patch's pixel vector (the reconstruction target)."""
        return self.patch_size * self.patch_size * self.in_chans

    def trunk_spec(self) -> TrunkSpec:
        return self.plain_vit_trunk_spec()

    def validate(self) -> None:
        self.check_vit_shape()


class MAEConfig(MAEVisionTransformerConfig):
    """Masked autoencoder: the encoder above (no head) plus a decoder of its own width, depth and heads, fixed
    sin-cos position tables, `mask_ratio` of the patches removed, pixels of masked patches as the target
    (each patch standardised on its own with `norm_pix_loss`)."""

    model_type = "mae_pretrain"

    def __init__(
        self,
        decoder_embed_dim: int = 512,
        decoder_layers: int = 8,
        decoder_num_heads: int = 16,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        num_classes: int = 0,
        global_pool: bool = False,
        **kwargs,
    ):
        self.decoder_embed_dim = decoder_embed_dim
        self.decoder_layers = decoder_layers
        self.decoder_num_heads = decoder_num_heads
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        super().__init__(num_classes=num_classes, global_pool=global_pool, **kwargs)

    @property
    def num_visible(self) -> int:
        """Patch tokens the encoder sees per image."""
        return num_kept_tokens(self.num_patches, self.mask_ratio)

    def decoder_spec(self) -> TrunkSpec:
        """The decoder's blocks: the encoder's kind of block at the decoder's width, depth and heads, no dropout."""
        return dataclasses.replace(
            self.trunk_spec(),
            dim=self.decoder_embed_dim,
            depth=self.decoder_layers,
            num_heads=self.decoder_num_heads,
            mlp_hidden_dim=int(self.decoder_embed_dim * self.mlp_ratio),
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.0,
        )

    def validate(self) -> None:
        super().validate()
        for name in ("embed_dim", "decoder_embed_dim"):
            if getattr(self, name) % 4:
                raise ValueError(f"{name} {getattr(self, name)} must be divisible by 4 (2-D sin-cos position table)")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(
                f"decoder_embed_dim {self.decoder_embed_dim} is not divisible by decoder_num_heads "
                f"{self.decoder_num_heads}"
            )
        check_mask_ratio(self.mask_ratio)
        num_kept_tokens(self.num_patches, self.mask_ratio)
