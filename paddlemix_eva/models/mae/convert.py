"""Conversion of MAE checkpoints: the official release (`mae_pretrain_vit_*.pth` encoders, `mae_visualize_*`
with decoder, `mae_finetuned_vit_*.pth`, linear-probe checkpoints) and timm's plain-ViT layout
(`vit_base_patch16_224.mae`, which is the same file). Both layouts are the plain ViT one (fused `qkv` with a bias
on q, k and v; `mlp.fc1/fc2`), so one set of rules serves `--format official` and `--format timm`.

Shapes give everything but the head count: the MAE sizes are looked up by width, other widths assume heads of
64 channels (decoder: 32, as upstream's 512 / 16), which `--model NAME` overrides.
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Tuple, Type

import numpy as np

from paddlemix_eva.convert.keymaps import is_clip_state_dict, vision_to_paddlemix
from paddlemix_eva.convert.shapes import count_blocks, mlp_ratio_for, require_tensor
from paddlemix_eva.utils.checkpoint import CheckpointError, StateDict

logger = logging.getLogger(__name__)

#: heads of the published MAE encoders by width (ViT-H has 80-channel heads)
MAE_HEADS = {768: 12, 1024: 16, 1280: 16}
DEFAULT_HEAD_DIM = 64
DECODER_HEAD_DIM = 32
#: upstream's linear-probe head, `Sequential(BatchNorm1d(affine=False), Linear)`, in this package's names
_PROBE_HEAD_RENAMES = {
    "head.0.running_mean": "head_norm._mean",
    "head.0.running_var": "head_norm._variance",
    "head.1.weight": "head.weight",
    "head.1.bias": "head.bias",
}
#: markers of the EVA layouts, which also have a fused qkv but never a bias on k
_EVA_MARKERS = re.compile(r"\.attn\.(q_bias|v_bias)$|\.mlp\.(w12|w1|w3|fc1_g|ffn_ln)\.|(^|\.)rope\.")


def detect(state: StateDict) -> bool:
    """A plain-ViT / MAE checkpoint: an MAE decoder, or blocks whose attention has a bias on k (fused `qkv.bias`
    in PyTorch layouts, `k_proj.bias` in Paddle's), and none of the EVA / CLIP markers."""
    if is_clip_state_dict(state) or any(_EVA_MARKERS.search(k) for k in state):
        return False
    if "decoder_embed.weight" in state:
        return True
    return any(re.match(r"blocks\.\d+\.attn\.(qkv|k_proj)\.bias$", k) for k in state)


def to_paddle_layout(state: StateDict, fmt: str) -> StateDict:
    """Keys and tensor layouts of this package: q/k/v split, Linear weights transposed, linear-probe head renamed.
    The shared splitter drops an all-zero k bias (padding in EVA layouts); MAE attention has one, so it is
    restored as zeros."""
    state = {_PROBE_HEAD_RENAMES.get(k, k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    converted = vision_to_paddlemix(state, fmt)
    for key, value in list(converted.items()):
        match = re.match(r"(.*\.attn)\.q_proj\.bias$", key)
        if match and f"{match.group(1)}.k_proj.bias" not in converted:
            converted[f"{match.group(1)}.k_proj.bias"] = np.zeros_like(value)
    return converted


def infer_architecture(state: StateDict, source: str = "checkpoint") -> Tuple[Type, object]:
    """Model class and config of a converted (Paddle-layout) MAE state dict, read from tensor shapes."""
    from paddlemix_eva.models.mae import MAEConfig, MAEForPretraining, MAEVisionTransformer, MAEVisionTransformerConfig

    conv = require_tensor(state, "patch_embed.proj.weight", source)
    pos = require_tensor(state, "pos_embed", source)
    embed_dim, in_chans, patch_size = int(conv.shape[0]), int(conv.shape[1]), int(conv.shape[-1])
    grid = int(round(np.sqrt(pos.shape[1] - 1)))
    hidden = int(require_tensor(state, "blocks.0.mlp.fc1.weight", source).shape[1])
    fields: Dict[str, object] = dict(
        image_size=grid * patch_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
        layers=count_blocks(state, r"blocks\.(\d+)\.", source),
        num_heads=MAE_HEADS.get(embed_dim, max(1, embed_dim // DEFAULT_HEAD_DIM)),
        mlp_ratio=mlp_ratio_for(hidden, embed_dim),
    )
    if "decoder_embed.weight" in state:
        decoder_dim = int(state["decoder_embed.weight"].shape[1])
        fields.update(decoder_embed_dim=decoder_dim,
                      decoder_layers=count_blocks(state, r"decoder_blocks\.(\d+)\.", source),
                      decoder_num_heads=max(1, decoder_dim // DECODER_HEAD_DIM))
        logger.info("%s: MAE pre-training model %s; norm_pix_loss cannot be read from weights (default True; the "
                    "official mae_visualize_* models were trained without it)", source, fields)
        return MAEForPretraining, MAEConfig(**fields)
    fields.update(
        num_classes=int(state["head.weight"].shape[1]) if "head.weight" in state else 0,
        global_pool="fc_norm.weight" in state,
        linear_probe="head_norm._mean" in state,
    )
    logger.info("%s: MAE ViT %s (head count from the MAE size table / 64-channel heads)", source, fields)
    return MAEVisionTransformer, MAEVisionTransformerConfig(**fields)


def convert(state: StateDict, fmt: str, source: str):
    """(model class, config, Paddle-layout state) of an MAE checkpoint in `fmt` ('official', 'timm' or
    'paddlemix' for one already in this package's layout)."""
    if fmt == "open_clip":
        raise CheckpointError(f"{source} is a plain ViT / MAE checkpoint, not open_clip; use --format official or timm")
    converted = to_paddle_layout(state, fmt)
    model_class, config = infer_architecture(converted, source)
    return model_class, config, converted
