"""Configurations of the EVA-02 vision transformer (classifier and MIM student).

Field names and defaults are PaddleMIX's, so a `config.json` published for PaddleMIX loads unchanged; the
named models of the zoo override them per size (see `paddlemix_eva/zoo.py`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from paddlemix_eva.models.configuration_utils import ImageClassifierConfig
from paddlemix_eva.models.trunk import TrunkSpec, ViTShapeMixin

# PaddleMIX config fields for features no released EVA-02 uses; refused when switched on rather than ignored.
_UNSUPPORTED_FLAGS = (
    "use_rel_pos_bias",
    "use_shared_rel_pos_bias",
    "use_shared_decoupled_rel_pos_bias",
    "deepnorm",
    "postnorm",
    "init_values",
)


MIM_MODEL_TYPE = "eva02_vit_pretrain"


class EVA02VisionTransformerConfig(ViTShapeMixin, ImageClassifierConfig):
    """EVA-02 classifier: mean of patch tokens -> `fc_norm` -> `head` (or cls token after `norm`). Evaluation
    preprocessing defaults to EVA-02's (CLIP mean / std, no crop margin, bicubic)."""

    model_type = "eva02_vit_finetune"

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
        qkv_bias: bool = False,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_abs_pos_emb: bool = True,
        use_mean_pooling: bool = True,
        init_scale: float = 0.001,
        init_std: float = 0.02,
        xavier_normal_init: bool = False,
        enable_recompute: bool = False,
        stop_grad_conv1: bool = True,
        subln: bool = True,
        swiglu: bool = False,
        naiveswiglu: bool = False,
        rope: bool = True,
        pt_hw_seq_len: int = 16,
        intp_freq: bool = False,
        **kwargs,
    ):
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
        self.qkv_bias = qkv_bias
        self.qk_scale = qk_scale
        self.drop_rate = drop_rate
        self.attn_drop_rate = attn_drop_rate
        self.drop_path_rate = drop_path_rate
        self.use_abs_pos_emb = use_abs_pos_emb
        self.use_mean_pooling = use_mean_pooling
        self.init_scale = init_scale
        self.init_std = init_std
        self.xavier_normal_init = xavier_normal_init
        self.enable_recompute = enable_recompute
        self.stop_grad_conv1 = stop_grad_conv1
        self.subln = subln
        self.swiglu = swiglu
        self.naiveswiglu = naiveswiglu
        self.rope = rope
        self.pt_hw_seq_len = pt_hw_seq_len
        self.intp_freq = intp_freq
        self.validate()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """A classifier from a MIM student's config (the usual start of fine-tuning): PaddleMIX's MIM config has no
        RoPE interpolation fields, so the classifier takes upstream fine-tuning's (positions rescaled to the 16x16
        pre-training grid)."""
        config_dict = dict(config_dict)
        if config_dict.get("model_type") == MIM_MODEL_TYPE and cls.model_type != MIM_MODEL_TYPE:
            config_dict.pop("model_type")  # an intended conversion, not PaddleNLP's "model of another type" case
            config_dict.pop("predict_feature_dim", None)
            config_dict.setdefault("intp_freq", True)
            config_dict.setdefault("pt_hw_seq_len", 16)
        return super().from_dict(config_dict, **kwargs)

    @property
    def use_swiglu(self) -> bool:
        return bool(self.swiglu or self.naiveswiglu)

    @property
    def use_ffn_ln(self) -> bool:
        """Sub-LN inside the FFN: SwiGLU only with `naiveswiglu` (B/L; the fused Ti/S layout has none)."""
        return bool(self.subln and (self.naiveswiglu or not self.use_swiglu))

    def trunk_spec(self) -> TrunkSpec:
        return TrunkSpec(
            image_size=self.image_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            dim=self.embed_dim,
            depth=self.layers,
            num_heads=self.num_heads,
            mlp_hidden_dim=self.mlp_hidden_dim,
            qkv_bias=self.qkv_bias,
            qk_scale=self.qk_scale,
            swiglu=self.use_swiglu,
            ffn_ln=self.use_ffn_ln,
            rope=self.rope,
            rope_pt_seq_len=self.pt_hw_seq_len if self.intp_freq else None,
            use_abs_pos_emb=self.use_abs_pos_emb,
            drop_rate=self.drop_rate,
            attn_drop_rate=self.attn_drop_rate,
            drop_path_rate=self.drop_path_rate,
        )

    def validate(self) -> None:
        for flag in _UNSUPPORTED_FLAGS:
            if getattr(self, flag, None):
                raise NotImplementedError(
                    f"{type(self).__name__}: `{flag}={getattr(self, flag)!r}` is a PaddleMIX option no released EVA-02 "
                    "model uses and paddlemix-eva does not implement; remove it from the config"
                )
        self.check_vit_shape()
        if self.rope and self.head_dim % 4:
            raise ValueError(f"2D RoPE needs a head dim divisible by 4; embed_dim/num_heads = {self.head_dim}")


class EVA02VisionTransformerForMIMConfig(EVA02VisionTransformerConfig):
    """EVA-02 masked-image-modeling student: final `norm`, `lm_head` to the teacher's feature width.

    The student's RoPE always uses integer positions on its own patch grid (PaddleMIX's `modeling_pretrain.py` and
    upstream build it with `pt_seq_len = image_size // patch_size`, no rescaling): 0..15 at 224/14, 0..13 for the
    `p14to16` checkpoints at 224/16. `pt_hw_seq_len` / `intp_freq` are not used by the student; they are the RoPE
    settings a classifier fine-tuned from it starts with (upstream fine-tuning rescales to the 16x16 grid).
    """

    model_type = MIM_MODEL_TYPE

    def __init__(
        self,
        patch_size: int = 14,
        predict_feature_dim: int = 1024,
        xavier_normal_init: bool = True,
        num_classes: int = 0,
        **kwargs,
    ):
        self.predict_feature_dim = predict_feature_dim
        super().__init__(
            patch_size=patch_size, xavier_normal_init=xavier_normal_init, num_classes=num_classes, **kwargs
        )

    def trunk_spec(self) -> TrunkSpec:
        return dataclasses.replace(super().trunk_spec(), rope_pt_seq_len=None)
