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


@dataclass(frozen=True)
class ZooEntry:
    """A published model. `config` holds the config class's fields, the preprocessing ones (mean, std, crop_pct,
    interpolation; a joint model's inside its image tower's fields) and, for classifiers, `class_names` (a list,
    a built-in label set such as "imagenet-1k", or None for label ids) included."""

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
    def class_names(self):
        return self.config.get("class_names")

    def load_class(self):
        module, _, cls = self.model_class.rpartition(".")
        return getattr(importlib.import_module(module), cls)

    def build_config(self, config_class=None, **overrides):
        """The entry's configuration object (of `config_class`, by default its model's), with `overrides` applied
        before construction (`image_size=448`; `num_classes=10`: a new head drops the old head's class names)."""
        config_class = config_class or self.load_class().config_class
        from_fields = getattr(config_class, "from_fields", None)
        if from_fields is not None:
            return from_fields(self.config, overrides)
        return config_class(**{**self.config, **overrides})

    @property
    def preprocessing(self):
        """How images are prepared for this model (`paddlemix_eva.data.transforms.Preprocessing`), read from its
        config (builds the config, not the model)."""
        return self.build_config().preprocessing
