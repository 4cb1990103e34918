"""Evo-ViT (slow-fast token evolution): Evo-DeiT, Evo-LeViT and the RegNetY-160 teacher of the LeViT recipe."""
from .configuration import EvoDeiTConfig, EvoLeViTConfig, RegNetConfig
from .evo_deit import EvoDeiT
from .evo_levit import EvoLeViT
from .regnet import RegNet

__all__ = ["EvoDeiTConfig", "EvoDeiT", "EvoLeViTConfig", "EvoLeViT", "RegNetConfig", "RegNet"]
