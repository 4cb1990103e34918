"""Which paddlemix-eva class a zoo name or a saved model directory holds: the zoo entry's class, or the class
whose config has the `model_type` written in the directory's config.json."""
from __future__ import annotations

import json
import os
from typing import Optional


def saved_model_type(directory: str) -> Optional[str]:
    """The `model_type` of a saved or converted model directory (None if its config.json has none)."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} has no config.json: not a saved or converted model directory")
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("model_type")


def model_class_for(name_or_dir: str) -> type:
    """The model class of a zoo name or a saved model directory (any family)."""
    from paddlemix_eva import models, zoo

    if not os.path.isdir(name_or_dir):
        return zoo.get_entry(name_or_dir).load_class()
    model_type = saved_model_type(name_or_dir)
    classes = [c for c in vars(models).values()
               if isinstance(c, type) and issubclass(c, models.EVAPretrainedModel)
               and c is not models.EVAPretrainedModel]
    for cls in classes:
        if getattr(cls.config_class, "model_type", None) == model_type:
            return cls
    raise ValueError(f"{name_or_dir}: model_type {model_type!r} is none of paddlemix-eva's models "
                     f"({sorted(c.config_class.model_type for c in classes)})")
