"""EVA-CLIP specifics of conversion: the architecture of both towers from tensor shapes."""
from __future__ import annotations

import logging
from typing import Dict, Tuple, Type

import numpy as np

from paddlemix_eva.convert.keymaps import clip_to_paddlemix, is_clip_state_dict
from paddlemix_eva.convert.shapes import count_blocks, mlp_ratio_for, require_tensor
from paddlemix_eva.models.evaclip import EVACLIP, EVACLIPConfig

logger = logging.getLogger(__name__)
StateDict = Dict[str, np.ndarray]
#: shapes cannot tell the head count: EVA-02 style towers use 64-d heads; GELU towers (EVA-01 g: 16 x 88,
#: EVA-02-CLIP-E: 16 x 112) the first of these widths that divides theirs
GELU_TOWER_HEAD_WIDTHS = (88, 112, 64)
TEXT_HEAD_DIM = 64  # every CLIP text tower


def detect(state: StateDict) -> bool:
    """An image-text checkpoint (official EVA-CLIP, open_clip, PaddleMIX): it has a text tower."""
    return is_clip_state_dict(state)


def convert(state: StateDict, fmt: str, source: str):
    from paddlemix_eva.convert import convert_mapped

    return convert_mapped(state, fmt, source, clip_to_paddlemix, infer_evaclip)


def infer_evaclip(state: StateDict, source: str = "checkpoint") -> Tuple[Type, EVACLIPConfig]:
    """Model class and config of a PaddleMIX-layout EVA-CLIP state dict, read from tensor shapes."""
    width = int(require_tensor(state, "visual.cls_token", source).shape[-1])
    conv = require_tensor(state, "visual.patch_embed.proj.weight", source)
    grid = int(round(np.sqrt(require_tensor(state, "visual.pos_embed", source).shape[1] - 1)))
    swiglu = "visual.blocks.0.mlp.w1.weight" in state
    hidden = int(state["visual.blocks.0.mlp.w1.weight" if swiglu else "visual.blocks.0.mlp.fc1.weight"].shape[1])
    # post-norm blocks (EVA-02-CLIP-E) cannot be told from pre-norm ones by shapes; the width identifies them
    vision = dict(
        image_size=grid * int(conv.shape[-1]),
        patch_size=int(conv.shape[-1]),
        width=width,
        layers=count_blocks(state, r"visual\.blocks\.(\d+)\.", source),
        head_width=64 if swiglu else next((h for h in GELU_TOWER_HEAD_WIDTHS if width % h == 0), 64),
        mlp_ratio=mlp_ratio_for(hidden, width),
        qkv_bias="visual.blocks.0.attn.q_proj.bias" in state,
        rope=swiglu,
        pt_hw_seq_len=16,
        intp_freq=swiglu,
        naiveswiglu=swiglu,
        subln="visual.blocks.0.mlp.ffn_ln.weight" in state,
        inner_attn_ln="visual.blocks.0.attn.inner_attn_ln.weight" in state,
        postnorm=width == 1792,
        use_mean_pooling=False,
    )
    text_width = int(require_tensor(state, "text.token_embedding.weight", source).shape[1])
    text = dict(
        context_length=int(require_tensor(state, "text.positional_embedding", source).shape[0]),
        vocab_size=int(state["text.token_embedding.weight"].shape[0]),
        width=text_width,
        heads=text_width // TEXT_HEAD_DIM,
        layers=count_blocks(state, r"text\.transformer\.resblocks\.(\d+)\.", source),
    )
    embed_dim = int(require_tensor(state, "text.text_projection", source).shape[1])
    logger.info("%s: inferred EVA-CLIP embed_dim=%d vision=%s text=%s", source, embed_dim, vision, text)
    return EVACLIP, EVACLIPConfig(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text)
