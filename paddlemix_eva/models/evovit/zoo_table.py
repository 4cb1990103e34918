"""Evo-ViT models (Xu et al., AAAI 2022) and the RegNetY-160 teacher of the Evo-LeViT recipe.

Top-1 is the Evo-ViT README's ImageNet-1K number (300 epochs; Evo-DeiT without distillation, Evo-LeViT with hard
distillation from RegNetY-160). Upstream publishes PyTorch files only: convert them with
`paddlemix-eva convert FILE --format official --model NAME --out DIR` (the teacher: timm's `regnety_160` file,
`--format timm`). The `_384` models only change the input size.
"""
from paddlemix_eva.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from paddlemix_eva.zoo.entry import WEIGHTS_SOURCE, ZooEntry

PREFIX = "paddlemix/EvoViT/"
EVO_DEIT = "paddlemix_eva.models.evovit.evo_deit.EvoDeiT"
EVO_LEVIT = "paddlemix_eva.models.evovit.evo_levit.EvoLeViT"
REGNET = "paddlemix_eva.models.evovit.regnet.RegNet"

# width, heads and the recipe's drop path per DeiT size (depth 12, patch 16, MLP 4)
DEIT_SIZES = {
    "tiny": dict(embed_dim=192, num_heads=3, drop_path_rate=0.0),
    "small": dict(embed_dim=384, num_heads=6, drop_path_rate=0.1),
    "base": dict(embed_dim=768, num_heads=12, drop_path_rate=0.1),
}
# LeViT sizes: stage widths, key dim, heads, depths, drop path; the first two blocks are never pruned
LEVIT_SIZES = {
    "128S": dict(embed_dims=(128, 256, 384), key_dim=16, num_heads=(4, 6, 8), depths=(2, 3, 4), drop_path_rate=0.0),
    "128": dict(embed_dims=(128, 256, 384), key_dim=16, num_heads=(4, 8, 12), depths=(4, 4, 4), drop_path_rate=0.0),
    "192": dict(embed_dims=(192, 288, 384), key_dim=32, num_heads=(3, 5, 6), depths=(4, 4, 4), drop_path_rate=0.0),
    "256": dict(embed_dims=(256, 384, 512), key_dim=32, num_heads=(4, 6, 8), depths=(4, 4, 4), drop_path_rate=0.0),
    "384": dict(embed_dims=(384, 512, 768), key_dim=32, num_heads=(6, 9, 12), depths=(4, 4, 4), drop_path_rate=0.1),
}
#: DeiT's evaluation preprocessing (Evo-ViT and the RegNet teacher use it): ImageNet mean / std, 0.875 crop, bicubic;
#: every model here is an ImageNet-1K classifier
IMAGENET_CLASSIFIER = dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), crop_pct=0.875, interpolation="bicubic",
                           class_names="imagenet-1k")
OFFICIAL = "official Evo-ViT release (PyTorch; convert with --format official)"


def deit_config(size: str, image_size: int = 224, **fields) -> dict:
    return {**DEIT_SIZES[size], **IMAGENET_CLASSIFIER, "image_size": image_size, "patch_size": 16, "layers": 12,
            **fields}


def levit_config(size: str, image_size: int = 224, **fields) -> dict:
    config = {**LEVIT_SIZES[size], **IMAGENET_CLASSIFIER, "image_size": image_size}
    blocks = sum(config["depths"])
    return {**config, "prune_ratios": (1.0, 1.0) + (0.5,) * (blocks - 2), **fields}


def _deit(size: str, image_size: int, top1=None, notes: str = "") -> ZooEntry:
    name = f"evo_deit_{size}_patch16_{image_size}"
    return ZooEntry(PREFIX + name, EVO_DEIT, deit_config(size, image_size), task="classification",
                    input_size=image_size, patch_size=16, top1=top1,
                    notes=notes or "no distillation (DeiT recipe)", extra={WEIGHTS_SOURCE: OFFICIAL})


def _levit(size: str, image_size: int, top1=None) -> ZooEntry:
    suffix = "" if image_size == 224 else "_384"
    return ZooEntry(PREFIX + f"evo_levit_{size}{suffix}", EVO_LEVIT, levit_config(size, image_size),
                    task="classification", input_size=image_size, patch_size=16, top1=top1,
                    notes="hard distillation from RegNetY-160 (LeViT recipe)", extra={WEIGHTS_SOURCE: OFFICIAL})


ENTRIES = [
    _deit("tiny", 224, top1=72.0),
    _deit("small", 224, top1=79.4),
    _deit("base", 224, top1=81.3),
    _deit("small", 384, notes="architecture only: no published weights"),
    _deit("base", 384, top1=82.0),
    _levit("128S", 224, top1=73.0),
    _levit("128", 224, top1=74.4),
    _levit("192", 224, top1=76.8),
    _levit("256", 224, top1=78.8),
    _levit("384", 224, top1=80.7),
    _levit("256", 384, top1=81.1),
    _levit("384", 384, top1=82.2),
    ZooEntry(PREFIX + "regnety_160", REGNET, {**IMAGENET_CLASSIFIER, "image_size": 224}, task="classification",
             input_size=224,
             notes="DeiT's distillation teacher (timm `regnety_160`, convert with --format timm)",
             extra={WEIGHTS_SOURCE: "timm regnety_160 (PyTorch; convert with --format timm)"}),
]

MODEL_TYPES = {"evo_deit": EVO_DEIT, "evo_levit": EVO_LEVIT, "regnety": REGNET}
