"""EVA-02: a plain ViT with SwiGLU, sub-LN and 2D RoPE (Fang et al., 2023).

Computes what the official EVA-02 (`asuka`) and timm's `Eva` compute; parameter names are PaddleMIX's.
Two heads share one trunk: `EVA02VisionTransformer` (classifier, mean-pooled patch tokens -> `fc_norm` ->
`head`) and `EVA02VisionTransformerForMIM` (`mask_token`, final `norm`, `lm_head` on masked tokens).
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers import init_trunc_normal, resample_checkpoint_pos_embed, scale_gradient
from paddlemix_eva.models.eva02.configuration import EVA02VisionTransformerConfig, EVA02VisionTransformerForMIMConfig
from paddlemix_eva.models.modeling_utils import EVAPretrainedModel
from paddlemix_eva.models.trunk import ViTTrunkMixin

logger = logging.getLogger(__name__)


class EVA02PretrainedModel(ViTTrunkMixin, EVAPretrainedModel):
    """The EVA-02 trunk shared by the classifier and the MIM student (patch embed, cls, pos_embed, RoPE, blocks)."""

    config_class = EVA02VisionTransformerConfig
    base_model_prefix = "eva02_vit"
    #: the patch embedding's gradient scale under `stop_grad_conv1` (upstream: 0 finetune, 0.1 MIM)
    stop_grad_conv1_scale = 0.0

    @property
    def enable_recompute(self) -> bool:
        """Per-block activation recompute in training (PaddleNLP's `--recompute` switches it on)."""
        return bool(self.config.enable_recompute)

    @enable_recompute.setter
    def enable_recompute(self, value: bool) -> None:
        self.config.enable_recompute = bool(value)

    # ----------------------------------------------------------------------------------- forward
    def _embed(self, image: paddle.Tensor, bool_masked_pos: Optional[paddle.Tensor] = None) -> paddle.Tensor:
        self.patch_embed.check_input(image, type(self).__name__)
        x = self.patch_embed(image)
        if self.config.stop_grad_conv1 and self.training:
            x = scale_gradient(x, self.stop_grad_conv1_scale)
        if bool_masked_pos is not None:
            w = bool_masked_pos.reshape([x.shape[0], -1, 1]).astype(x.dtype)
            x = x * (1.0 - w) + self.mask_token.astype(x.dtype) * w
        return self._tokens(x)

    def forward_features(
        self, image: paddle.Tensor, bool_masked_pos: Optional[paddle.Tensor] = None
    ) -> paddle.Tensor:
        """All tokens [B, 1 + N, D] after the last block (before any final norm)."""
        return self._forward_blocks(self._embed(image, bool_masked_pos), recompute=self.config.enable_recompute)

    @classmethod
    def adapt_state_dict(
        cls, state_dict: Dict[str, np.ndarray], config: EVA02VisionTransformerConfig, source: str
    ) -> Dict[str, np.ndarray]:
        """A checkpoint at another grid loads only by interpolating its pos_embed, and never silently."""
        state_dict = super().adapt_state_dict(state_dict, config, source)
        resample_checkpoint_pos_embed(state_dict, "pos_embed", config.grid_size, config.embed_dim, source)
        return state_dict


class EVA02VisionTransformer(EVA02PretrainedModel):
    """EVA-02 image classifier."""

    is_classifier = True

    # Keys a checkpoint may lack (a fresh head for a new label set); keys dropped on purpose (MIM-only, and the
    # MIM student's final `norm`, which a mean-pooling classifier does not have; only applies when not expected).
    _optional_checkpoint_keys = (r"^head\.", r"^fc_norm\.", r"^norm\.")
    _dropped_checkpoint_keys = (r"^mask_token$", r"^lm_head\.", r"^norm\.")

    def __init__(self, config: EVA02VisionTransformerConfig):
        super().__init__(config)
        self._build_trunk(config.trunk_spec())
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
        self._init_trunk(std=config.init_std)
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
    finetunes_into = "eva02_vit_finetune"
    stop_grad_conv1_scale = 0.1
    _optional_checkpoint_keys = (r"^lm_head\.",)
    _dropped_checkpoint_keys = (r"^head\.", r"^fc_norm\.")

    def __init__(self, config: EVA02VisionTransformerForMIMConfig):
        super().__init__(config)
        self._build_trunk(config.trunk_spec())
        self.mask_token = self.create_parameter(
            [1, 1, config.embed_dim], default_initializer=nn.initializer.Constant(0.0)
        )
        self.norm = self.norm_layer(config.embed_dim)
        self.lm_head = nn.Linear(config.embed_dim, config.predict_feature_dim)
        self.init_weights()

    def _init_parameters(self) -> None:
        config = self.config
        # upstream pre-training: xavier init, tokens truncated at +-1 std
        self._init_trunk(std=config.init_std, xavier=config.xavier_normal_init, token_bound=config.init_std)
        init_trunc_normal(self.mask_token, config.init_std, bound=config.init_std)
        if config.use_ffn_ln:
            self._rescale_subln_params()

    def no_weight_decay(self) -> List[str]:
        return ["pos_embed", "cls_token", "mask_token"]

    @classmethod
    def image_encoder(cls, config: EVA02VisionTransformerForMIMConfig):
        """Features of every patch, nothing masked (the cost of a full forward)."""
        model = cls(config)

        def forward(image: paddle.Tensor) -> paddle.Tensor:
            mask = paddle.zeros([image.shape[0], config.num_patches], dtype="bool")
            return model(image, mask, return_all_tokens=True)

        return model, forward

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

