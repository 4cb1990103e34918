"""The registry: every published model by name, and every `model_type` a saved `config.json` can hold.

Each family registers itself through its table (`paddlemix_eva/models/<family>/zoo_table.py`): `ENTRIES`, its
published models as `ZooEntry`s, and `MODEL_TYPES`, `model_type -> model class` (dotted paths, so nothing here
imports Paddle or model code until a model is built). The registry knows nothing of the families' configs:
what an entry needs for listing (input size, patch, preprocessing, labels) is declared on it.

    zoo.get_entry(name), zoo.list_models(pattern), zoo.build_config(entry), zoo.get_model(name)
    zoo.model_class_for(name_or_dir)          # the class of a zoo name or a saved directory, any family
    zoo.register(entry), zoo.register_model_type(model_type, "package.module.Class")   # your own models
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
import os
from typing import Dict, List, Optional

from paddlemix_eva.zoo.entry import WEIGHTS_SOURCE, ZooEntry

__all__ = ["ZooEntry", "WEIGHTS_SOURCE", "register", "register_model_type", "entries", "find_entry", "get_entry",
           "list_models", "build_config", "get_model", "model_class_for", "classifier_class_for",
           "model_class_for_type", "saved_model_type", "looks_like_path"]

#: the family tables, in listing order
_TABLES = (
    "paddlemix_eva.models.eva02.zoo_table",
    "paddlemix_eva.models.evaclip.zoo_table",
    "paddlemix_eva.models.mae.zoo_table",
    "paddlemix_eva.models.evovit.zoo_table",
)
_REGISTRY: Dict[str, ZooEntry] = {}
_MODEL_TYPES: Dict[str, str] = {}
_loaded = False


def _ensure_tables() -> None:
    """Fill the registry from each table, in `_TABLES` order, so listing order never depends on which model
    modules happened to be imported first."""
    global _loaded
    if not _loaded:
        _loaded = True
        for table in _TABLES:
            module = importlib.import_module(table)
            for model_type, model_class in module.MODEL_TYPES.items():
                _add_model_type(model_type, model_class)
            for entry in module.ENTRIES:
                _add(entry)


def _add(entry: ZooEntry) -> None:
    if entry.full_name in _REGISTRY:
        raise ValueError(f"zoo name registered twice: {entry.full_name}")
    _REGISTRY[entry.full_name] = entry


def _add_model_type(model_type: str, model_class: str) -> None:
    if _MODEL_TYPES.get(model_type, model_class) != model_class:
        raise ValueError(f"model_type {model_type!r} registered twice ({_MODEL_TYPES[model_type]}, {model_class})")
    _MODEL_TYPES[model_type] = model_class


def register(entry: ZooEntry) -> None:
    """Add an entry outside the shipped tables (e.g. a user's own fine-tuned variant); listed after them."""
    _ensure_tables()
    _add(entry)


def register_model_type(model_type: str, model_class: str) -> None:
    """Make `model_class` (a dotted path) the class of saved directories whose config.json has `model_type`."""
    _ensure_tables()
    _add_model_type(model_type, model_class)


def entries() -> List[ZooEntry]:
    _ensure_tables()
    return list(_REGISTRY.values())


def find_entry(name: str) -> Optional[ZooEntry]:
    """The entry for a full name (`paddlemix/EVA/EVA02/x`) or a short one (`x`); None if unknown."""
    _ensure_tables()
    if name in _REGISTRY:
        return _REGISTRY[name]
    matches = [e for e in _REGISTRY.values() if e.name == name]
    return matches[0] if len(matches) == 1 else None


def looks_like_path(name: str) -> bool:
    """Whether a model reference is meant as a directory: it starts with `.` or `~` or is absolute, or it holds a
    path separator and does not start with a zoo namespace (`paddlemix/...`)."""
    if name.startswith((".", "~")) or os.path.isabs(name):
        return True
    if not any(sep in name for sep in {"/", os.sep, os.altsep} - {None}):
        return False
    return name.replace(os.sep, "/").split("/", 1)[0] not in {e.full_name.split("/", 1)[0] for e in entries()}


def get_entry(name: str) -> ZooEntry:
    entry = find_entry(name)
    if entry is None and os.path.isfile(name):
        raise FileNotFoundError(f"{name} is a file, not a model directory (a folder with config.json and the "
                                "weights) or a zoo name")
    if entry is None and looks_like_path(name):
        raise FileNotFoundError(f"model directory {name} does not exist (a name with a path separator, or starting "
                                "with . or ~, is read as a directory; `paddlemix-eva list` lists the zoo names)")
    if entry is None:
        close = difflib.get_close_matches(name.rsplit("/", 1)[-1], [e.name for e in entries()], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model name {name!r}.{hint} `paddlemix-eva list` (in Python: "
                       "`paddlemix_eva.list_models()`) lists the zoo.")
    return entry


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Short names of the zoo, optionally filtered by a shell-style pattern (`*Ti*`), in table order."""
    names = [e.name for e in entries()]
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.lower(), pattern.lower())]
    return names


def build_config(entry: ZooEntry, config_class=None, **overrides):
    """The entry's configuration object, with `overrides` applied (e.g. `image_size=448`, `num_classes=10`)."""
    return entry.build_config(config_class, **overrides)


def get_model(name: str, pretrained: bool = False, **overrides):
    """Build a zoo model by name; `pretrained=True` loads its published weights (downloaded once and cached)."""
    entry = get_entry(name)
    model_class = entry.load_class()
    if pretrained:
        return model_class.from_pretrained(entry.full_name, **overrides)
    return model_class(entry.build_config(**overrides))


# ----------------------------------------------------------------------------------------- model types
def saved_model_type(directory: str) -> Optional[str]:
    """The `model_type` of a saved or converted model directory (None if its config.json has none)."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} has no config.json: not a saved or converted model directory")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
        raise ValueError(f"{path} is not valid JSON: {getattr(err, 'msg', 'not UTF-8 text')}{where}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object of config fields, got a {type(config).__name__}")
    return config.get("model_type")


def model_class_for_type(model_type: str) -> type:
    _ensure_tables()
    if model_type not in _MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is none of paddlemix-eva's models ({sorted(_MODEL_TYPES)})")
    module, _, cls = _MODEL_TYPES[model_type].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def model_class_for(name_or_dir: str, untyped: Optional[str] = None) -> type:
    """The model class of a zoo name or a saved model directory (any family). A config.json without a
    `model_type` (hand-written) is read as `untyped` when given, else refused."""
    if not os.path.isdir(name_or_dir):
        return get_entry(name_or_dir).load_class()
    model_type = saved_model_type(name_or_dir) or untyped
    if model_type is None:
        raise ValueError(f"{name_or_dir}/config.json names no model_type; add one of {sorted(_model_types())}")
    try:
        return model_class_for_type(model_type)
    except ValueError as err:
        raise ValueError(f"{name_or_dir}: {err}") from None


def classifier_class_for(name_or_dir: str, untyped: Optional[str] = None) -> type:
    """The image-classifier class a zoo name or directory loads into for fine-tuning, evaluation or prediction:
    its own class for a classifier, the class its pre-training model fine-tunes into (`finetunes_into`, e.g. an
    EVA-02 MIM student into the EVA-02 classifier), else a ValueError that says why."""
    model_class = model_class_for(name_or_dir, untyped)
    if getattr(model_class, "is_classifier", False):
        return model_class
    target = getattr(model_class, "finetunes_into", None)
    if target is None:
        raise ValueError(f"{name_or_dir} is a {model_class.__name__}, which is not an image classifier and does not "
                         "fine-tune into one")
    return model_class_for_type(target)


def _model_types() -> List[str]:
    _ensure_tables()
    return list(_MODEL_TYPES)
