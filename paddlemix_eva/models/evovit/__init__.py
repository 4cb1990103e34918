"""Evo-ViT (slow-fast token evolution): Evo-DeiT, Evo-LeViT and the RegNetY-160 teacher of the LeViT recipe."""
from paddlemix_eva.models.evovit.configuration import EvoDeiTConfig, EvoLeViTConfig, RegNetConfig
from paddlemix_eva.models.evovit.evo_deit import EvoDeiT
from paddlemix_eva.models.evovit.evo_levit import EvoLeViT
from paddlemix_eva.models.evovit.regnet import RegNet

__all__ = ["EvoDeiTConfig", "EvoDeiT", "EvoLeViTConfig", "EvoLeViT", "RegNetConfig", "RegNet"]
