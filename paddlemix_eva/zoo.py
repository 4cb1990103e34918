"""The model zoo: every published name with its configuration, shipped inside the package.

Entries are registered by the per-family tables (`paddlemix_eva/models/*/zoo_table.py`); this module only
knows how to find, list and build them, so it imports neither Paddle nor the model code until asked to build.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional


@dataclass(frozen=True)
class ZooEntry:
    """A published model: its full PaddleMIX name, the class that builds it and that class's config values."""

    full_name: str  # e.g. "paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14"
    model_class: str  # dotted path of the PretrainedModel subclass
    config: Mapping[str, Any]
    task: str  # "classification" | "mim" | "mim-pretrain" | "clip" | ...
    top1: Optional[float] = None  # published ImageNet-1K top-1 (%)
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]

    def _field(self, name: str):
        """A config field, looked up in nested tower / student configs when the model is composite."""
        for scope in (self.config, self.config.get("vision_cfg") or {}, self.config.get("student_config") or {}):
            if isinstance(scope, Mapping) and name in scope:
                return scope[name]
        return None

    @property
    def image_size(self) -> Optional[int]:
        return self._field("image_size")

    @property
    def patch_size(self) -> Optional[int]:
        return self._field("patch_size")

    def load_class(self):
        module, _, cls = self.model_class.rpartition(".")
        return getattr(importlib.import_module(module), cls)


_REGISTRY: Dict[str, ZooEntry] = {}
_TABLES = ("paddlemix_eva.models.eva02.zoo_table", "paddlemix_eva.models.evaclip.zoo_table")
_loaded = False


def register(entry: ZooEntry) -> None:
    if entry.full_name in _REGISTRY:
        raise ValueError(f"zoo name registered twice: {entry.full_name}")
    _REGISTRY[entry.full_name] = entry


def _ensure_tables() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for table in _TABLES:
            importlib.import_module(table)


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


def get_entry(name: str) -> ZooEntry:
    entry = find_entry(name)
    if entry is None:
        close = difflib.get_close_matches(name.rsplit("/", 1)[-1], [e.name for e in entries()], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model name {name!r}.{hint} `paddlemix_eva.list_models()` lists the zoo.")
    return entry


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Short names of the zoo, optionally filtered by a shell-style pattern (`*Ti*`), in table order."""
    names = [e.name for e in entries()]
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n.lower(), pattern.lower())]
    return names


def build_config(entry: ZooEntry, config_class=None, **overrides):
    """The entry's configuration object, with `overrides` applied (e.g. `image_size=448`, `num_classes=10`)."""
    config_class = config_class or entry.load_class().config_class
    return config_class(**{**entry.config, **overrides})


def count_parameters(name_or_entry) -> int:
    """Parameters of a zoo model, counted on a lazily built instance (no weights allocated)."""
    from .models.modeling_utils import count_parameters as count

    entry = name_or_entry if isinstance(name_or_entry, ZooEntry) else get_entry(name_or_entry)
    model_class = entry.load_class()
    return count(model_class.build_lazily(build_config(entry, model_class.config_class)))


def get_model(name: str, pretrained: bool = False, **overrides):
    """Build a zoo model by name; `pretrained=True` loads its published weights (downloaded once and cached)."""
    entry = get_entry(name)
    model_class = entry.load_class()
    if pretrained:
        return model_class.from_pretrained(entry.full_name, **overrides)
    return model_class(build_config(entry, model_class.config_class, **overrides))
