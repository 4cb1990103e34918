"""Model classes of every family; all are PaddleNLP `PretrainedModel`s with `from_pretrained` / `save_pretrained`."""
from .eva02 import (
    EVA02VisionTransformer,
    EVA02VisionTransformerConfig,
    EVA02VisionTransformerForMIM,
    EVA02VisionTransformerForMIMConfig,
)
from .evaclip import EVACLIP, EVACLIPConfig
from .evovit import EvoDeiT, EvoDeiTConfig, EvoLeViT, EvoLeViTConfig, RegNet, RegNetConfig  # noqa: F401
from .mae import MAEConfig, MAEForPretraining, MAEVisionTransformer, MAEVisionTransformerConfig  # noqa: F401
from .modeling_utils import EVAPretrainedModel

__all__ = [
    "EVAPretrainedModel",
    "EVA02VisionTransformerConfig",
    "EVA02VisionTransformerForMIMConfig",
    "EVA02VisionTransformer",
    "EVA02VisionTransformerForMIM",
    "EVACLIPConfig",
    "EVACLIP",
]
