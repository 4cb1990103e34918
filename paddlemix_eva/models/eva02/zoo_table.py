"""The published EVA-02 checkpoints (PaddleMIX names), as a table of sizes x stages.

Published top-1 is ImageNet-1K val from the EVA-02 paper / README. MIM checkpoints are 224 px students whose
`lm_head` predicts the 1024-d features of the EVA-CLIP g/14 teacher.
"""
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD
from paddlemix_eva.zoo.entry import ZooEntry

PREFIX = "paddlemix/EVA/EVA02/"
CLASSIFIER = "paddlemix_eva.models.eva02.modeling.EVA02VisionTransformer"
MIM = "paddlemix_eva.models.eva02.modeling.EVA02VisionTransformerForMIM"
FOR_PRETRAIN = "paddlemix_eva.models.eva02.pretrain.EVA02ForPretrain"

# Width, depth, heads per size (head dim 64 throughout); Ti/S keep the fused-SwiGLU layout without sub-LN,
# B/L use SwiGLU with a sub-LN (`ffn_ln`) on the hidden size.
SIZES = {
    "Ti": dict(embed_dim=192, layers=12, num_heads=3, swiglu=True, naiveswiglu=False, subln=False),
    "S": dict(embed_dim=384, layers=12, num_heads=6, swiglu=True, naiveswiglu=False, subln=False),
    "B": dict(embed_dim=768, layers=12, num_heads=12, swiglu=False, naiveswiglu=True, subln=True),
    "L": dict(embed_dim=1024, layers=24, num_heads=16, swiglu=False, naiveswiglu=True, subln=True),
}
COMMON = dict(mlp_ratio=2.6667, qkv_bias=True, rope=True, pt_hw_seq_len=16, intp_freq=True, in_chans=3)
#: upstream's evaluation preprocessing at every stage: CLIP mean / std, resize to the crop size, bicubic
PREPROCESSING = dict(mean=list(CLIP_MEAN), std=list(CLIP_STD), crop_pct=1.0, interpolation="bicubic")
FINETUNE_SIZE = {"Ti": 336, "S": 336, "B": 448, "L": 448}


def eva02_config(size: str, image_size: int, patch_size: int = 14, **fields) -> dict:
    return {**COMMON, **SIZES[size], **PREPROCESSING, "image_size": image_size, "patch_size": patch_size, **fields}


def _mim(name: str, size: str, patch_size: int = 14, notes: str = "") -> ZooEntry:
    config = eva02_config(size, 224, patch_size, predict_feature_dim=1024)
    return ZooEntry(PREFIX + name, MIM, config, task="mim", input_size=224, patch_size=patch_size, notes=notes)


def _classifier(name: str, size: str, num_classes: int, top1=None, notes: str = "") -> ZooEntry:
    labels = "imagenet-1k" if num_classes == 1000 else None  # no IN-21K names ship: those heads print label ids
    config = eva02_config(size, FINETUNE_SIZE[size], num_classes=num_classes, use_mean_pooling=True,
                          class_names=labels)
    return ZooEntry(PREFIX + name, CLASSIFIER, config, task="classification", input_size=config["image_size"],
                    patch_size=config["patch_size"], top1=top1, notes=notes)


P14TO16 = "patch embedding resized 14->16, pos_embed 16x16->14x14 (for detection/segmentation)"
ENTRIES = [
    # masked image modeling, IN-21K images (and Merged-38M for L)
    _mim("eva02_Ti_pt_in21k_p14", "Ti"),
    _mim("eva02_S_pt_in21k_p14", "S"),
    _mim("eva02_B_pt_in21k_p14", "B"),
    _mim("eva02_B_pt_in21k_p14to16", "B", patch_size=16, notes=P14TO16),
    _mim("eva02_L_pt_in21k_p14", "L"),
    _mim("eva02_L_pt_in21k_p14to16", "L", patch_size=16, notes=P14TO16),
    _mim("eva02_L_pt_m38m_p14", "L", notes="MIM on Merged-38M"),
    _mim("eva02_L_pt_m38m_p14to16", "L", patch_size=16, notes="MIM on Merged-38M; " + P14TO16),
    # intermediate fine-tuning on ImageNet-21K (21,841 classes, 448 px)
    _classifier("eva02_B_pt_in21k_medft_in21k_p14", "B", 21841, notes="IN-21K intermediate fine-tune"),
    _classifier("eva02_L_pt_in21k_medft_in21k_p14", "L", 21841, notes="IN-21K intermediate fine-tune"),
    _classifier("eva02_L_pt_m38m_medft_in21k_p14", "L", 21841, notes="IN-21K intermediate fine-tune"),
    # ImageNet-1K
    _classifier("eva02_Ti_pt_in21k_ft_in1k_p14", "Ti", 1000, top1=80.7),
    _classifier("eva02_S_pt_in21k_ft_in1k_p14", "S", 1000, top1=85.8),
    _classifier("eva02_B_pt_in21k_ft_in1k_p14", "B", 1000, top1=88.3),
    _classifier("eva02_L_pt_in21k_ft_in1k_p14", "L", 1000, top1=89.6, notes="EMA weights"),
    _classifier("eva02_L_pt_m38m_ft_in1k_p14", "L", 1000, top1=89.6, notes="EMA weights"),
    _classifier("eva02_B_pt_in21k_medft_in21k_ft_in1k_p14", "B", 1000, top1=88.6, notes="EMA weights"),
    _classifier("eva02_L_pt_in21k_medft_in21k_ft_in1k_p14", "L", 1000, top1=89.9, notes="EMA weights"),
    _classifier("eva02_L_pt_m38m_medft_in21k_ft_in1k_p14", "L", 1000, top1=90.0, notes="EMA weights"),
    # composite teacher + student for MIM pre-training (the student trains from scratch)
    ZooEntry(
        PREFIX + "eva02_Ti_for_pretrain",
        FOR_PRETRAIN,
        {
            "teacher_config": "paddlemix/EVA/EVA01-CLIP-g-14",
            "student_config": {**eva02_config("Ti", 224), "predict_feature_dim": 1024},
        },
        task="mim-pretrain",
        input_size=224,
        patch_size=14,
        notes="EVA01-CLIP-g-14 teacher + EVA-02 Ti student",
    ),
]

#: the classes of saved directories, by the `model_type` in their config.json
MODEL_TYPES = {
    "eva02_vit_finetune": CLASSIFIER,
    "eva02_vit_pretrain": MIM,
    "eva02_for_pretrain": FOR_PRETRAIN,
}
