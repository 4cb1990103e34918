"""EVA-CLIP (Sun et al., 2023): an EVA vision tower and an OpenAI-CLIP text tower in one embedding space.

Computes what the official EVA-CLIP (`rei`) and open_clip compute; parameter names are PaddleMIX's
(`visual.*`, `text.transformer.resblocks.*`, `logit_scale` of shape [1]). Both towers are built from the shared
blocks of `paddlemix_eva.layers`. `encode_image_tokens` is the EVA-02 MIM teacher's target.
"""
from __future__ import annotations

import logging
import math
from typing import Dict, Optional

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers import (
    CLIP_TEXT_NAMES,
    Block,
    make_layer_norm,
    resample_checkpoint_pos_embed,
    run_blocks,
)
from paddlemix_eva.layers.losses import l2_normalize
from paddlemix_eva.models.evaclip.configuration import EVACLIPConfig, EVACLIPTextConfig, EVACLIPVisionConfig
from paddlemix_eva.models.modeling_utils import EVAPretrainedModel
from paddlemix_eva.models.trunk import ViTTrunkMixin

logger = logging.getLogger(__name__)
TEXT_LN_EPS = 1e-5  # OpenAI CLIP text towers use PyTorch's default LayerNorm eps


class EVACLIPVisionTransformer(ViTTrunkMixin, nn.Layer):
    """Image tower: trunk -> final `norm` -> cls token -> `head` (width -> embed_dim)."""

    def __init__(self, config: EVACLIPVisionConfig):
        super().__init__()
        self.config = config
        self._build_trunk(config.trunk_spec())
        self.norm = self.norm_layer(config.width)
        self.head = nn.Linear(config.width, config.embed_dim)
        self.enable_recompute = False  # PaddleNLP's --recompute sets it: per-block recompute in training

    def init_parameters(self) -> None:
        """Upstream EVA-CLIP init: trunc-normal .02, residual outputs / sqrt(2 l), head x init_scale."""
        self._init_trunk(std=0.02)
        self._rescale_residual_projections()
        with paddle.no_grad():
            self.head.weight.set_value(self.head.weight * self.config.init_scale)
            self.head.bias.set_value(self.head.bias * self.config.init_scale)

    def forward_features(self, image: paddle.Tensor) -> paddle.Tensor:
        """Normalised tokens [B, 1 + N, width]."""
        self.patch_embed.check_input(image, "EVA-CLIP vision tower")
        return self.norm(self._forward_trunk(self.patch_embed(image), recompute=self.enable_recompute))

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.forward_features(image)[:, 0])

    def forward_tokens(self, image: paddle.Tensor) -> paddle.Tensor:
        """`head` applied to every patch token [B, N, embed_dim] (cls dropped): the MIM teacher's target."""
        return self.head(self.forward_features(image)[:, 1:])


class TextTransformerStack(nn.Layer):
    """`resblocks`: pre-LN blocks with causal self-attention (q/k/v all with bias) and a GELU MLP."""

    def __init__(self, config: EVACLIPTextConfig):
        super().__init__()
        norm = make_layer_norm(TEXT_LN_EPS)
        self.resblocks = nn.LayerList(
            [
                Block(
                    config.width,
                    config.heads,
                    int(config.width * config.mlp_ratio),
                    qkv_bias=True,
                    k_bias=True,
                    norm_layer=norm,
                    swiglu=False,
                    names=CLIP_TEXT_NAMES,
                )
                for _ in range(config.layers)
            ]
        )
        self.enable_recompute = False  # PaddleNLP's --recompute sets it: per-block recompute in training

    def forward(self, x: paddle.Tensor, attn_mask: paddle.Tensor) -> paddle.Tensor:
        return run_blocks(self.resblocks, x, None, attn_mask, recompute=self.enable_recompute and self.training)


class EVACLIPTextTransformer(nn.Layer):
    """Text tower: token + position embeddings, causal transformer, `ln_final`, end-token pooling, projection."""

    def __init__(self, config: EVACLIPTextConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        zeros = nn.initializer.Constant(0.0)
        self.positional_embedding = self.create_parameter([config.context_length, config.width],
                                                          default_initializer=zeros)
        self.transformer = TextTransformerStack(config)
        self.ln_final = make_layer_norm(TEXT_LN_EPS)(config.width)
        self.text_projection = self.create_parameter([config.width, config.embed_dim], default_initializer=zeros)
        causal = np.triu(np.full((config.context_length, config.context_length), -np.inf, np.float32), 1)
        self.register_buffer("attn_mask", paddle.to_tensor(causal), persistable=False)

    def init_parameters(self) -> None:
        """open_clip's text init: embeddings N(0, .02) / N(0, .01), projections scaled by width and depth."""
        width, layers = self.config.width, self.config.layers
        normal = lambda t, std: nn.initializer.Normal(0.0, std)(t)  # noqa: E731
        normal(self.token_embedding.weight, 0.02)
        normal(self.positional_embedding, 0.01)
        attn_std, proj_std, fc_std = width**-0.5, width**-0.5 * (2 * layers) ** -0.5, (2 * width) ** -0.5
        for blk in self.transformer.resblocks:
            for linear, std in ((blk.attn.q_proj, attn_std), (blk.attn.k_proj, attn_std), (blk.attn.v_proj, attn_std),
                                (blk.attn.out_proj, proj_std), (blk.mlp.c_fc, fc_std), (blk.mlp.c_proj, proj_std)):
                normal(linear.weight, std)
                nn.initializer.Constant(0.0)(linear.bias)
            for ln in (blk.ln_1, blk.ln_2):
                nn.initializer.Constant(1.0)(ln.weight)
                nn.initializer.Constant(0.0)(ln.bias)
        normal(self.text_projection, width**-0.5)

    def layer_ids(self) -> Dict[str, int]:
        """Depth of every parameter for layer-wise LR decay, as the vision trunk counts it: the embeddings 0,
        `resblocks` i i + 1, `ln_final` and `text_projection` L + 1 (read from the module tree)."""
        embedding = {id(self.token_embedding.weight), id(self.positional_embedding)}
        block_of = {id(p): i + 1 for i, blk in enumerate(self.transformer.resblocks) for p in blk.parameters()}
        last = len(self.transformer.resblocks) + 1
        return {name: 0 if id(p) in embedding else block_of.get(id(p), last) for name, p in self.named_parameters()}

    def forward(self, input_ids: paddle.Tensor) -> paddle.Tensor:
        """[B, context] token ids -> [B, embed_dim] features at each text's end token (its largest id)."""
        if input_ids.ndim != 2 or input_ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"text tower expects token ids [B, <= {self.config.context_length}], got shape {list(input_ids.shape)}"
            )
        length = input_ids.shape[1]
        x = (self.token_embedding(input_ids)
             + self.positional_embedding[:length].astype(self.token_embedding.weight.dtype))
        x = self.transformer(x, self.attn_mask[:length, :length])
        x = self.ln_final(x)
        eot = input_ids.argmax(axis=-1)
        pooled = paddle.take_along_axis(x, eot.reshape([-1, 1, 1]).expand([-1, 1, x.shape[-1]]), axis=1).squeeze(1)
        return pooled @ self.text_projection.astype(pooled.dtype)


class EVACLIP(EVAPretrainedModel):
    """Joint model: `encode_image`, `encode_text`, `encode_image_tokens`; forward gives normalised features and
    the logits `exp(logit_scale) * image @ text.T` with the learned scale clamped at 100."""

    config_class = EVACLIPConfig
    #: turns into a classifier over any class names (`paddlemix_eva.tasks.zeroshot.zero_shot_classifier`)
    is_zero_shot_classifier = True
    base_model_prefix = "evaclip"
    _optional_checkpoint_keys = ()
    _dropped_checkpoint_keys = ()

    def __init__(self, config: EVACLIPConfig):
        super().__init__(config)
        self.visual = EVACLIPVisionTransformer(config.vision_config)
        self.text = EVACLIPTextTransformer(config.text_config)
        self.logit_scale = self.create_parameter(
            [1], default_initializer=nn.initializer.Constant(math.log(1 / 0.07))
        )
        self.init_weights()

    def _init_parameters(self) -> None:
        self.visual.init_parameters()
        self.text.init_parameters()
        nn.initializer.Constant(math.log(1 / 0.07))(self.logit_scale)

    def set_input_size(self, image_size: int) -> None:
        """The vision tower rebuilt for another input size (see `ViTTrunkMixin.set_input_size`); the joint config
        holds the tower's config, so it saves the new size."""
        self.visual.set_input_size(image_size)

    def no_weight_decay(self):
        return ["logit_scale", "visual.pos_embed", "visual.cls_token", "text.positional_embedding"]

    @classmethod
    def config_with_depth(cls, fields, depth: int):
        """Both towers at `depth` blocks; the vision tower's published depth (the image encoder's) is returned."""
        vision, text = dict(fields["vision_cfg"]), dict(fields.get("text_cfg") or {})
        reduced = {**fields, "vision_cfg": {**vision, "layers": depth}}
        if text:
            reduced["text_cfg"] = {**text, "layers": depth}
        return reduced, int(vision["layers"])

    @classmethod
    def image_encoder(cls, config: EVACLIPConfig):
        """The vision tower alone (the text tower is not built)."""
        visual = EVACLIPVisionTransformer(config.vision_config)
        return visual, visual

    # ------------------------------------------------------------------------------- encoders
    def encode_image(self, image: paddle.Tensor, normalize: bool = False) -> paddle.Tensor:
        features = self.visual(image)
        return l2_normalize(features) if normalize else features

    def encode_text(self, input_ids: paddle.Tensor, normalize: bool = False) -> paddle.Tensor:
        features = self.text(input_ids)
        return l2_normalize(features) if normalize else features

    def encode_image_tokens(self, image: paddle.Tensor) -> paddle.Tensor:
        """Per-patch features [B, N, embed_dim]: final norm and `head` on every patch token (the MIM target)."""
        return self.visual.forward_tokens(image)

    def scale(self) -> paddle.Tensor:
        """exp(logit_scale), the learned temperature, clamped at 100 as in CLIP training."""
        return self.logit_scale.clip(max=math.log(100.0)).exp()

    def forward(
        self, image: Optional[paddle.Tensor] = None, input_ids: Optional[paddle.Tensor] = None
    ) -> Dict[str, paddle.Tensor]:
        out: Dict[str, paddle.Tensor] = {"logit_scale": self.scale()}
        if image is not None:
            out["image_features"] = self.encode_image(image, normalize=True)
        if input_ids is not None:
            out["text_features"] = self.encode_text(input_ids, normalize=True)
        if image is not None and input_ids is not None:
            out["logits_per_image"] = out["logit_scale"] * out["image_features"] @ out["text_features"].T
            out["logits_per_text"] = out["logits_per_image"].T
        return out

    # -------------------------------------------------------------------------------- loading
    @classmethod
    def adapt_state_dict(cls, state_dict, config: EVACLIPConfig, source: str):
        """PyTorch keeps `logit_scale` 0-d; a checkpoint at another image size resamples `visual.pos_embed`."""
        state_dict = super().adapt_state_dict(state_dict, config, source)
        if "logit_scale" in state_dict:
            state_dict["logit_scale"] = np.asarray(state_dict["logit_scale"], dtype=np.float32).reshape([1])
        vision = config.vision_config
        resample_checkpoint_pos_embed(state_dict, "visual.pos_embed", vision.grid_size, vision.width, source)
        return state_dict
