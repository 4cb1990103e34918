"""Training recipes as PaddleNLP `Trainer` subclasses (extension points overridden, no forked loops)."""
from paddlemix_eva.trainer.base import EVATrainer, EVATrainingArguments
from paddlemix_eva.trainer.clip import CLIPTrainer, collate_image_text
from paddlemix_eva.trainer.optim import apply_lr_scales, decayed_parameter_names

__all__ = ["EVATrainer", "EVATrainingArguments", "CLIPTrainer", "collate_image_text", "apply_lr_scales",
           "decayed_parameter_names"]
