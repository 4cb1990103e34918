"""Model classes of every family; all are PaddleNLP `PretrainedModel`s with `from_pretrained` / `save_pretrained`."""
from paddlemix_eva.models.eva02 import (
    EVA02VisionTransformer,
    EVA02VisionTransformerConfig,
    EVA02VisionTransformerForMIM,
    EVA02VisionTransformerForMIMConfig,
)
from paddlemix_eva.models.evaclip import EVACLIP, EVACLIPConfig
from paddlemix_eva.models.evovit import EvoDeiT, EvoDeiTConfig, EvoLeViT, EvoLeViTConfig, RegNet, RegNetConfig  # noqa: F401
from paddlemix_eva.models.mae import MAEConfig, MAEForPretraining, MAEVisionTransformer, MAEVisionTransformerConfig  # noqa: F401
from paddlemix_eva.models.modeling_utils import EVAPretrainedModel

__all__ = [
    "EVAPretrainedModel",
    "EVA02VisionTransformerConfig",
    "EVA02VisionTransformerForMIMConfig",
    "EVA02VisionTransformer",
    "EVA02VisionTransformerForMIM",
    "EVACLIPConfig",
    "EVACLIP",
]
