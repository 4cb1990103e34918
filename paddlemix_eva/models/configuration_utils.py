"""The fields every image model's config declares beyond its architecture: how images are preprocessed for it
and, for classifiers, what its outputs are called.

Saved with the config (`config.json`), so a model directory or an export is self-describing: inference reads the
preprocessing and the label names from there. PaddleMIX's config.json files carry none of these fields; they load
with the family's defaults (EVA-02: CLIP mean / std, no crop margin, bicubic).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from paddlenlp.transformers import PretrainedConfig

from paddlemix_eva.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    check_preprocessing,
)
from paddlemix_eva.utils.resources import label_set

logger = logging.getLogger(__name__)

ClassNames = Union[None, str, Sequence[str]]

#: what a config's evaluation preprocessing defaults to: EVA-02's and EVA-CLIP's
CLIP_PREPROCESSING: Mapping[str, Any] = {"mean": CLIP_MEAN, "std": CLIP_STD, "crop_pct": 1.0,
                                         "interpolation": "bicubic"}
#: ImageNet-trained models' (MAE, DeiT, LeViT, RegNet): ImageNet mean / std, 0.875 centre crop, bicubic
IMAGENET_PREPROCESSING: Mapping[str, Any] = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 0.875,
                                             "interpolation": "bicubic"}


class ImageConfig(PretrainedConfig):
    """Config of a model that takes images: `mean`, `std`, `crop_pct`, `interpolation` (with `image_size`) say
    how an image is prepared for it. Subclasses set `preprocessing_defaults` to their family's values."""

    attribute_map: Dict[str, str] = {}
    preprocessing_defaults: Mapping[str, Any] = CLIP_PREPROCESSING

    def __init__(
        self,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        crop_pct: Optional[float] = None,
        interpolation: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        defaults = type(self).preprocessing_defaults
        self.mean = [float(v) for v in (defaults["mean"] if mean is None else mean)]
        self.std = [float(v) for v in (defaults["std"] if std is None else std)]
        self.crop_pct = float(defaults["crop_pct"] if crop_pct is None else crop_pct)
        self.interpolation = str(defaults["interpolation"] if interpolation is None else interpolation)
        check_preprocessing(self.mean, self.std, self.crop_pct, self.interpolation)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(int(self.image_size), tuple(self.mean), tuple(self.std), self.crop_pct,
                             self.interpolation)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None):
        """The config of `fields` (a zoo entry's, a config.json's) with `overrides` applied before construction."""
        return cls(**{**fields, **(overrides or {})})


class ImageClassifierConfig(ImageConfig):
    """Config of an image classifier: `num_classes` outputs (PaddleMIX's field; PaddleNLP's `num_labels` reads
    the same value) named by `class_names`, a list or a built-in label set ("imagenet-1k"); `id2label` /
    `label2id` follow from them (an `id2label` in a config.json becomes `class_names`)."""

    attribute_map: Dict[str, str] = {"num_labels": "num_classes"}

    def __init__(self, class_names: ClassNames = None, **kwargs):
        id2label = kwargs.pop("id2label", None)
        kwargs.pop("label2id", None)  # derived from the names
        if "num_labels" in kwargs:
            raise TypeError("paddlemix-eva configs count classes in `num_classes` (PaddleMIX's field), not num_labels")
        super().__init__(**kwargs)
        if class_names is None and id2label:
            class_names = [id2label[key] for key in sorted(id2label, key=int)]
        self.class_names = class_names if class_names is None or isinstance(class_names, str) else list(class_names)

    # PaddleNLP's PretrainedConfig assigns these in its __init__; here they are views of `class_names`
    @property
    def id2label(self) -> Optional[Dict[int, str]]:
        if "num_classes" not in self.__dict__:
            return None
        return dict(enumerate(self.label_names()))

    @id2label.setter
    def id2label(self, value: Optional[Mapping[Any, str]]) -> None:
        if value is not None:
            self.class_names = [value[key] for key in sorted(value, key=int)]

    @property
    def label2id(self) -> Optional[Dict[str, int]]:
        id2label = self.id2label
        return None if id2label is None else {name: i for i, name in id2label.items()}

    @label2id.setter
    def label2id(self, value) -> None:
        pass

    def label_names(self) -> List[str]:
        """One name per output: the declared class names, else the label ids ("0", "1", ...)."""
        num_classes = int(self.num_classes or 0)
        if self.class_names is None:
            return [str(i) for i in range(num_classes)]
        names = label_set(self.class_names) if isinstance(self.class_names, str) else list(self.class_names)
        if len(names) != num_classes:
            source = f"label set {self.class_names!r}" if isinstance(self.class_names, str) else "class_names"
            raise ValueError(f"{type(self).__name__}: {source} has {len(names)} names for num_classes={num_classes}")
        return names

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None):
        """As `ImageConfig.from_fields`; a new `num_classes` (a fresh head) drops class names it did not bring."""
        return cls(**without_stale_class_names(fields, overrides or {}))


def without_stale_class_names(fields: Mapping[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """`fields` updated by `overrides`; the old head's names (and id2label) go when the override changes
    num_classes without naming the new classes."""
    merged = {**fields, **overrides}
    new_head = "num_classes" in overrides and overrides["num_classes"] != fields.get("num_classes")
    if new_head and "class_names" not in overrides and "id2label" not in overrides:
        for key in ("class_names", "id2label", "label2id"):
            merged.pop(key, None)
    return merged
