"""Training recipes as PaddleNLP `Trainer` subclasses (extension points overridden, no forked loops)."""
from .base import EVATrainer
from .clip import CLIPTrainer, collate_image_text
from .optim import param_groups

__all__ = ["EVATrainer", "CLIPTrainer", "collate_image_text", "param_groups"]
