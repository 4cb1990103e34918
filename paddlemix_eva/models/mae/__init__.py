"""MAE (masked autoencoders): pre-training model, classifier for fine-tuning / linear probing, helpers."""
from .configuration import MAEConfig, MAEVisionTransformerConfig
from .modeling import MAEForPretraining, MAEPretrainedModel, MAEVisionTransformer

__all__ = ["MAEConfig", "MAEVisionTransformerConfig", "MAEPretrainedModel", "MAEForPretraining", "MAEVisionTransformer"]
