"""MAE (masked autoencoders): pre-training model, classifier for fine-tuning / linear probing, helpers."""
from paddlemix_eva.models.mae.configuration import MAEConfig, MAEVisionTransformerConfig
from paddlemix_eva.models.mae.modeling import MAEForPretraining, MAEPretrainedModel, MAEVisionTransformer

__all__ = ["MAEConfig", "MAEVisionTransformerConfig", "MAEPretrainedModel", "MAEForPretraining", "MAEVisionTransformer"]
