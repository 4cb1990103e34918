"""The fields every image model's config declares beyond its architecture: how images are preprocessed for it
and, for classifiers, what its outputs are called.

Saved with the config (`config.json`), so a model directory or an export is self-describing: inference reads the
preprocessing and the label names from there. PaddleMIX's config.json files carry none of these fields; they load
with the family's defaults (EVA-02: CLIP mean / std, no crop margin, bicubic).
"""
from __future__ import annotations

import collections.abc
import inspect
import json
import logging
import typing
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
from paddlemix_eva.utils.errors import read_json_file
from paddlemix_eva.utils.resources import label_set

logger = logging.getLogger(__name__)

ClassNames = Union[None, str, Sequence[str]]

#: what a config's evaluation preprocessing defaults to: EVA-02's and EVA-CLIP's
CLIP_PREPROCESSING: Mapping[str, Any] = {"mean": CLIP_MEAN, "std": CLIP_STD, "crop_pct": 1.0,
                                         "interpolation": "bicubic"}
#: ImageNet-trained models' (MAE, DeiT, LeViT, RegNet): ImageNet mean / std, 0.875 centre crop, bicubic
IMAGENET_PREPROCESSING: Mapping[str, Any] = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 0.875,
                                             "interpolation": "bicubic"}


class CheckedConfig(PretrainedConfig):
    """A config whose `config.json` is checked as it is read: text that is not JSON, or a field whose value is not
    of the type its `__init__` declares (`"embed_dim": "192"`, `"mean": "clip"`), is a ValueError naming the file,
    the field and the expected type, instead of a failure deep inside the model. Every paddlemix-eva config derives
    from it; `nested_configs` names fields that hold another config's fields (EVA-CLIP's towers)."""

    nested_configs: Mapping[str, type] = {}

    @classmethod
    def _dict_from_json_file(cls, json_file) -> Dict[str, Any]:
        config = read_json_file(str(json_file))
        if not isinstance(config, dict):
            raise ValueError(f"{json_file}: expected a JSON object of config fields, got {_describe_value(config)}")
        cls.check_field_types(config, str(json_file))
        return config

    @classmethod
    def field_types(cls) -> Dict[str, Any]:
        """field -> declared type of every `__init__` argument of paddlemix-eva's classes in the MRO (the
        annotation, else the type of a non-None default)."""
        types: Dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            init = klass.__dict__.get("__init__")
            if init is None or not klass.__module__.startswith("paddlemix_eva"):
                continue
            try:
                hints = typing.get_type_hints(init)
            except Exception:  # an annotation that does not resolve: fall back to the defaults' types
                hints = {}
            for name, param in inspect.signature(init).parameters.items():
                if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                declared = hints.get(name)
                if declared is None and param.default not in (None, param.empty):
                    declared = type(param.default)
                if declared is not None:
                    types[name] = declared
        return types

    @classmethod
    def check_field_types(cls, config: Mapping[str, Any], source: str, prefix: str = "") -> None:
        """Raise a ValueError naming `source`, the field and the expected type for the first field of `config`
        whose JSON value does not fit its declared type (fields the class does not declare are not checked)."""
        for name, declared in cls.field_types().items():
            if name in config and not _fits(config[name], declared):
                raise ValueError(f"{source}: field '{prefix}{name}' is {_describe_value(config[name])}; expected "
                                 f"{_describe_type(declared)}")
        for name, nested in cls.nested_configs.items():
            if isinstance(config.get(name), dict):
                nested.check_field_types(config[name], source, prefix=f"{prefix}{name}.")


def _fits(value: Any, declared: Any) -> bool:
    """Whether a JSON value fits a declared Python type (types JSON cannot express are not checked)."""
    origin = typing.get_origin(declared)
    if declared is Any:
        return True
    if origin is Union:
        return any(_fits(value, arg) for arg in typing.get_args(declared))
    if declared is type(None):
        return value is None
    if declared is bool:
        return isinstance(value, bool)
    if declared is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if declared is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if declared is str:
        return isinstance(value, str)
    container = origin or declared
    if container in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        element = _element_type(declared)
        return element is None or all(_fits(item, element) for item in value)
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def _element_type(declared: Any) -> Any:
    """The item type of `List[X]`, `Sequence[X]`, `Tuple[X, ...]` (None when items are not all of one type)."""
    args = typing.get_args(declared)
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
        return args[0]
    return None


def _describe_type(declared: Any) -> str:
    if typing.get_origin(declared) is Union:
        args = typing.get_args(declared)
        named = [_describe_type(a) for a in args if a is not type(None)]
        return " or ".join(named + (["null"] if type(None) in args else []))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if declared in names:
        return names[declared]
    container = typing.get_origin(declared) or declared
    if container in (list, tuple, collections.abc.Sequence):
        element = _element_type(declared)
        plural = {int: "integers", float: "numbers", str: "strings"}.get(element)
        return f"a list of {plural}" if plural else "a list"
    if container in (dict, collections.abc.Mapping):
        return "an object ({...})"
    return getattr(declared, "__name__", str(declared))


def _describe_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return "a list" if isinstance(value, list) else "an object"


class ImageConfig(CheckedConfig):
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
