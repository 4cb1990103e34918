"""Training recipes as PaddleNLP `Trainer` subclasses (extension points overridden, no forked loops)."""
from .base import EVATrainer, EVATrainingArguments
from .clip import CLIPTrainer, collate_image_text
from .optim import apply_lr_scales, decayed_parameter_names

__all__ = ["EVATrainer", "EVATrainingArguments", "CLIPTrainer", "collate_image_text", "apply_lr_scales", "decayed_parameter_names"]
