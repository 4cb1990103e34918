"""Parameter names of the shared blocks per model family (PaddleMIX's vision names, CLIP text's)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerNames:
    """Attribute (= state-dict key) names of a block's sub-layers; the math is the same under every scheme."""

    norm1: str = "norm1"
    norm2: str = "norm2"
    attn_out: str = "proj"
    fc1: str = "fc1"
    fc2: str = "fc2"


#: EVA / timm-style vision blocks
VISION_NAMES = LayerNames()
#: OpenAI CLIP text blocks (`ln_1`, `attn.out_proj`, `mlp.c_fc`, `mlp.c_proj`)
CLIP_TEXT_NAMES = LayerNames(norm1="ln_1", norm2="ln_2", attn_out="out_proj", fc1="c_fc", fc2="c_proj")
