"""EVA-02 specifics of conversion: architecture from tensor shapes, and the published p14to16 transform."""
from __future__ import annotations

import logging
from typing import Dict, Tuple, Type

import numpy as np
import paddle
import paddle.nn.functional as F

from paddlemix_eva.convert.keymaps import vision_to_paddlemix
from paddlemix_eva.convert.shapes import count_blocks, mlp_ratio_for, require_tensor
from paddlemix_eva.layers import resample_abs_pos_embed
from paddlemix_eva.models.eva02 import (
    EVA02VisionTransformer,
    EVA02VisionTransformerConfig,
    EVA02VisionTransformerForMIM,
    EVA02VisionTransformerForMIMConfig,
)

logger = logging.getLogger(__name__)
StateDict = Dict[str, np.ndarray]
EVA02_HEAD_DIM = 64  # every released EVA-02 uses 64-d heads; shapes alone cannot tell the head count


def detect(state: StateDict) -> bool:
    """Tried last, after the families with layouts of their own: every remaining checkpoint is read as an EVA-02
    vision transformer, whose shape checks then say what is missing."""
    return True


def convert(state: StateDict, fmt: str, source: str):
    from paddlemix_eva.convert import convert_mapped

    return convert_mapped(state, fmt, source, vision_to_paddlemix, infer_eva02)


def infer_eva02(state: StateDict, source: str = "checkpoint") -> Tuple[Type, EVA02VisionTransformerConfig]:
    """Model class and config of a PaddleMIX-layout EVA-02 state dict, read from tensor shapes."""
    cls_token = require_tensor(state, "cls_token", source)
    conv = require_tensor(state, "patch_embed.proj.weight", source)
    pos = require_tensor(state, "pos_embed", source)
    embed_dim = int(cls_token.shape[-1])
    patch_size = int(conv.shape[-1])
    grid = int(round(np.sqrt(pos.shape[1] - 1)))
    layers = count_blocks(state, r"blocks\.(\d+)\.", source)
    swiglu = "blocks.0.mlp.w1.weight" in state
    hidden_key = "blocks.0.mlp.w1.weight" if swiglu else "blocks.0.mlp.fc1.weight"
    hidden = int(require_tensor(state, hidden_key, source).shape[1])
    mlp_ratio = mlp_ratio_for(hidden, embed_dim)
    subln = "blocks.0.mlp.ffn_ln.weight" in state
    fields = dict(
        image_size=grid * patch_size,
        patch_size=patch_size,
        in_chans=int(conv.shape[1]),
        embed_dim=embed_dim,
        layers=layers,
        num_heads=embed_dim // EVA02_HEAD_DIM,
        mlp_ratio=mlp_ratio,
        qkv_bias="blocks.0.attn.q_proj.bias" in state,
        swiglu=swiglu and not subln,
        naiveswiglu=swiglu and subln,
        subln=subln,
        rope=True,
        pt_hw_seq_len=16,
        intp_freq=True,
    )
    logger.info("%s: inferred EVA-02 with %s (heads assume head dim %d)", source, fields, EVA02_HEAD_DIM)
    if "mask_token" in state or "lm_head.weight" in state:
        fields["predict_feature_dim"] = int(require_tensor(state, "lm_head.weight", source).shape[1])
        return EVA02VisionTransformerForMIM, EVA02VisionTransformerForMIMConfig(**fields)
    fields["num_classes"] = int(state["head.weight"].shape[1]) if "head.weight" in state else 0
    fields["use_mean_pooling"] = "fc_norm.weight" in state or "norm.weight" not in state
    return EVA02VisionTransformer, EVA02VisionTransformerConfig(**fields)


def p14_to_p16(state: StateDict, config: EVA02VisionTransformerConfig) -> EVA02VisionTransformerConfig:
    """Turn a patch-14 model into patch-16 in place, as EVA-02's p14to16 checkpoints were made: the patch kernel
    resized 14x14 -> 16x16 and pos_embed 16x16 -> 14x14 grid, both bicubic (align_corners=False, no antialias)."""
    if config.patch_size != 14:
        raise ValueError(f"p14to16 needs a patch-14 model, this one has patch_size={config.patch_size}")
    if config.image_size % 16:
        raise ValueError(f"p14to16: image_size {config.image_size} is not a multiple of 16")
    conv = paddle.to_tensor(state["patch_embed.proj.weight"].astype(np.float32))
    conv16 = F.interpolate(conv, size=[16, 16], mode="bicubic", align_corners=False)
    state["patch_embed.proj.weight"] = conv16.numpy().astype(state["patch_embed.proj.weight"].dtype)
    new_grid = config.image_size // 16
    pos = paddle.to_tensor(state["pos_embed"].astype(np.float32))
    state["pos_embed"] = resample_abs_pos_embed(pos, (new_grid, new_grid)).numpy().astype(state["pos_embed"].dtype)
    config.patch_size = 16
    config.validate()
    return config
