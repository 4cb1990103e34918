"""MAE models: the pre-training architectures, the released pre-trained encoders and the fine-tuned classifiers.

Upstream publishes PyTorch files only, so every entry with weights names the official file to convert
(`paddlemix-eva convert FILE --format official --model NAME --out DIR`); top-1 is the MAE README's ImageNet-1K
fine-tuning result, linear-probe accuracies (paper, TF/TPU) are in the notes.
"""
from paddlemix_eva.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from paddlemix_eva.zoo.entry import WEIGHTS_SOURCE, ZooEntry

PREFIX = "paddlemix/MAE/"
PRETRAIN = "paddlemix_eva.models.mae.modeling.MAEForPretraining"
CLASSIFIER = "paddlemix_eva.models.mae.modeling.MAEVisionTransformer"

# Encoders: pre-norm ViT, MLP ratio 4; every size shares the 512-wide, 8-block, 16-head decoder. "test" is a
# CPU-sized model for tests and smoke runs (32 px, 4x4 patches of 8; 64-channel encoder heads and 32-channel
# decoder heads as in the published sizes, so the converters infer its head counts).
SIZES = {
    "base": dict(image_size=224, patch_size=16, embed_dim=768, layers=12, num_heads=12),
    "large": dict(image_size=224, patch_size=16, embed_dim=1024, layers=24, num_heads=16),
    "huge": dict(image_size=224, patch_size=14, embed_dim=1280, layers=32, num_heads=16),
    "test": dict(image_size=32, patch_size=8, embed_dim=128, layers=2, num_heads=2, decoder_embed_dim=64,
                 decoder_layers=1, decoder_num_heads=2),
}
#: MAE's evaluation preprocessing: ImageNet mean / std, resize to 256 and centre-crop 224, bicubic
PREPROCESSING = dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), crop_pct=0.875, interpolation="bicubic")
DECODER = dict(decoder_embed_dim=512, decoder_layers=8, decoder_num_heads=16)
ENCODER_ONLY = ("decoder_embed_dim", "decoder_layers", "decoder_num_heads")
PATCH = {"base": 16, "large": 16, "huge": 14}


def mae_config(size: str, **fields) -> dict:
    """Config fields of the pre-training model of `size` (base / large / huge / test), with overrides."""
    return {**DECODER, "mlp_ratio": 4.0, **PREPROCESSING, **SIZES[size], **fields}


def classifier_config(size: str, **fields) -> dict:
    """Config fields of the ViT classifier (no decoder) of `size`."""
    return {k: v for k, v in mae_config(size, **fields).items() if k not in ENCODER_ONLY}


def _entry(name: str, model_class: str, config: dict, task: str, official: str, top1=None, notes="") -> ZooEntry:
    return ZooEntry(PREFIX + name, model_class, config, task=task, input_size=config["image_size"],
                    patch_size=config["patch_size"], top1=top1, notes=notes,
                    extra={WEIGHTS_SOURCE: official})


ENTRIES = [
    # pre-training from scratch (upstream released no decoder weights for these)
    *[_entry(f"mae_vit_{size}_patch{PATCH[size]}", PRETRAIN, mae_config(size), "mae-pretrain", "",
             notes="architecture for pre-training; mask ratio 0.75, norm_pix_loss")
      for size in ("base", "large", "huge")],
    _entry("mae_visualize_vit_large", PRETRAIN, mae_config("large", norm_pix_loss=False), "mae-pretrain",
           "mae_visualize_vit_large.pth", notes="with decoder, pixel targets without norm_pix_loss (visualisation)"),
    # released pre-trained encoders (cls token after the final norm; no head)
    *[_entry(f"mae_pretrain_vit_{size}", CLASSIFIER, classifier_config(size, num_classes=0, global_pool=False),
             "mae-encoder", f"mae_pretrain_vit_{size}.pth", notes=f"1600-epoch encoder; linear probe {probe} %")
      for size, probe in (("base", 68.0), ("large", 75.8), ("huge", 76.6))],
    # fine-tuned on ImageNet-1K (global average pooling + fc_norm)
    *[_entry(f"mae_finetuned_vit_{size}", CLASSIFIER, classifier_config(size, num_classes=1000, global_pool=True,
                                                                               class_names="imagenet-1k"),
             "classification", f"mae_finetuned_vit_{size}.pth", top1=top1)
      for size, top1 in (("base", 83.6), ("large", 85.9), ("huge", 86.9))],
]

MODEL_TYPES = {"mae_vit": CLASSIFIER, "mae_pretrain": PRETRAIN}
