from paddlemix_eva.models.eva02.configuration import EVA02VisionTransformerConfig, EVA02VisionTransformerForMIMConfig
from paddlemix_eva.models.eva02.modeling import (
    EVA02PretrainedModel,
    EVA02VisionTransformer,
    EVA02VisionTransformerForMIM,
)

__all__ = [
    "EVA02VisionTransformerConfig",
    "EVA02VisionTransformerForMIMConfig",
    "EVA02PretrainedModel",
    "EVA02VisionTransformer",
    "EVA02VisionTransformerForMIM",
]
