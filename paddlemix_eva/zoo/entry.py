"""What a zoo entry is: a published model's name, the class that builds it, that class's config values, and the
facts a user needs before building it (input size, patch, preprocessing, labels, published accuracy).

A leaf module: the family tables (`models/<family>/zoo_table.py`) build entries from it, the registry
(`paddlemix_eva.zoo`) collects them; neither imports Paddle or model code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

#: `ZooEntry.extra` key of entries without published Paddle weights: the PyTorch file (or model) the user converts
#: them from ("" for an architecture upstream released no weights for)
WEIGHTS_SOURCE = "weights_source"
#: the preprocessing keys every model config carries (see `paddlemix_eva.data.transforms.Preprocessing`)
PREPROCESSING_KEYS = ("mean", "std", "crop_pct", "interpolation")


@dataclass(frozen=True)
class ZooEntry:
    """A published model. `config` holds the config class's fields, the preprocessing ones (mean, std, crop_pct,
    interpolation) and `class_names` (a list, a built-in label set such as "imagenet-1k", or None) included."""

    full_name: str  # e.g. "paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14"
    model_class: str  # dotted path of the PretrainedModel subclass
    config: Mapping[str, Any]
    task: str  # "classification" | "mim" | "mim-pretrain" | "clip" | "mae-pretrain" | "mae-encoder"
    input_size: int  # the image size the model is built for
    patch_size: Optional[int] = None  # None for convolutional models
    top1: Optional[float] = None  # published ImageNet-1K top-1 (%), zero-shot for CLIP models
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]

    @property
    def preprocessing(self) -> Mapping[str, Any]:
        return {key: self.config[key] for key in PREPROCESSING_KEYS if key in self.config}

    def load_class(self):
        module, _, cls = self.model_class.rpartition(".")
        return getattr(importlib.import_module(module), cls)
