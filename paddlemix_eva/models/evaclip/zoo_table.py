"""The published EVA-CLIP models (PaddleMIX names). Zero-shot top-1 is ImageNet-1K from the EVA-CLIP README."""
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD
from paddlemix_eva.zoo.entry import ZooEntry

PREFIX = "paddlemix/EVA/"
EVACLIP = "paddlemix_eva.models.evaclip.modeling.EVACLIP"

# EVA-02 style towers: RoPE on the 16x16 pre-training grid, SwiGLU with sub-LN, LayerNorm inside attention.
EVA02_VISION = dict(qkv_bias=True, rope=True, pt_hw_seq_len=16, intp_freq=True, naiveswiglu=True, subln=True,
                    inner_attn_ln=True, mlp_ratio=2.6667, head_width=64, use_mean_pooling=False)
# EVA-01 g/14 (also the EVA-02 MIM teacher): GELU MLP, no RoPE, 16 heads of 88.
EVA01_G_VISION = dict(image_size=224, patch_size=14, width=1408, layers=40, head_width=88, mlp_ratio=4.3637,
                      qkv_bias=True, rope=False, naiveswiglu=False, subln=False, use_mean_pooling=False,
                      drop_path_rate=0.4)
# EVA-02-CLIP-E: EVA-01 style blocks scaled up, post-norm residuals.
BIGE_VISION = dict(image_size=224, patch_size=14, width=1792, layers=64, head_width=112, mlp_ratio=15360 / 1792,
                   qkv_bias=True, rope=False, naiveswiglu=False, subln=False, postnorm=True, use_mean_pooling=False)


#: open_clip's evaluation preprocessing for every EVA-CLIP: CLIP mean / std, resize to the crop size, bicubic
PREPROCESSING = dict(mean=list(CLIP_MEAN), std=list(CLIP_STD), crop_pct=1.0, interpolation="bicubic")


def _text(width: int, heads: int, layers: int) -> dict:
    return dict(context_length=77, vocab_size=49408, width=width, heads=heads, layers=layers)


def _clip(name: str, embed_dim: int, vision: dict, text: dict, top1: float, notes: str = "") -> ZooEntry:
    config = {"embed_dim": embed_dim, "vision_cfg": {**PREPROCESSING, **vision}, "text_cfg": text}
    return ZooEntry(PREFIX + name, EVACLIP, config, task="clip", input_size=vision["image_size"],
                    patch_size=vision["patch_size"], top1=top1, notes=notes)


ENTRIES = [
    _clip("EVA01-CLIP-g-14", 1024, EVA01_G_VISION, _text(768, 12, 12), 78.5, notes="EVA-02 MIM teacher"),
    _clip("EVA01-CLIP-g-14-plus", 1024, EVA01_G_VISION, _text(1024, 16, 24), 79.3),
    _clip("EVA02-CLIP-B-16", 512, dict(EVA02_VISION, image_size=224, patch_size=16, width=768, layers=12),
          _text(512, 8, 12), 74.7),
    _clip("EVA02-CLIP-L-14", 768, dict(EVA02_VISION, image_size=224, patch_size=14, width=1024, layers=24),
          _text(768, 12, 12), 79.8),
    _clip("EVA02-CLIP-L-14-336", 768, dict(EVA02_VISION, image_size=336, patch_size=14, width=1024, layers=24),
          _text(768, 12, 12), 80.4),
    _clip("EVA02-CLIP-bigE-14", 1024, BIGE_VISION, _text(1024, 16, 24), 81.9),
    _clip("EVA02-CLIP-bigE-14-plus", 1024, BIGE_VISION, _text(1280, 20, 32), 82.0),
]

MODEL_TYPES = {"evaclip": EVACLIP}
