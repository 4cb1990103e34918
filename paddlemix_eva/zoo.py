"""The model zoo: every published name with its configuration, shipped inside the package.

Entries are registered by the per-family tables (`paddlemix_eva/models/*/zoo_table.py`); this module only
knows how to find, list and build them, so it imports neither Paddle nor the model code until asked to build.
"""
from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Tuple


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


#: `ZooEntry.extra` key of entries without published Paddle weights: the PyTorch file (or model) the user converts
#: them from ("" for an architecture upstream released no weights for)
WEIGHTS_SOURCE = "weights_source"
_REGISTRY: Dict[str, ZooEntry] = {}
_TABLES = (
    "paddlemix_eva.models.eva02.zoo_table",
    "paddlemix_eva.models.evaclip.zoo_table",
    "paddlemix_eva.models.mae.zoo_table",
    "paddlemix_eva.models.evovit.zoo_table",
)
_loaded = False


def register(entry: ZooEntry) -> None:
    """Add an entry outside the shipped tables (e.g. a user's own fine-tuned variant); listed after them."""
    _ensure_tables()
    _add(entry)


def _add(entry: ZooEntry) -> None:
    if entry.full_name in _REGISTRY:
        raise ValueError(f"zoo name registered twice: {entry.full_name}")
    _REGISTRY[entry.full_name] = entry


def _ensure_tables() -> None:
    """Fill the registry from each table's `ENTRIES`, in `_TABLES` order, so listing order never depends on which
    model modules happened to be imported first."""
    global _loaded
    if not _loaded:
        _loaded = True
        for table in _TABLES:
            for entry in importlib.import_module(table).ENTRIES:
                _add(entry)


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
    config_class = config_class or entry.load_class().config_class
    return config_class(**{**entry.config, **overrides})


def count_parameters(name_or_entry) -> int:
    """Parameters of a zoo model, counted on a lazily built instance (no weights allocated); cached like MACs."""
    entry = name_or_entry if isinstance(name_or_entry, ZooEntry) else get_entry(name_or_entry)
    return _cached_count("params", entry, _count_parameters)


def _count_parameters(entry: ZooEntry) -> int:
    from paddlemix_eva.models.modeling_utils import count_parameters as count

    model_class = entry.load_class()
    return count(model_class.build_lazily(build_config(entry, model_class.config_class)))


#: config scopes that may hold the depth (`layers`) of the image encoder
_DEPTH_SCOPES = (None, "vision_cfg", "student_config")


def _with_depth(config: Mapping[str, Any], depth: int) -> Tuple[Dict[str, Any], int]:
    """A copy of `config` whose image encoder has `depth` blocks, and the original depth."""
    out = dict(config)
    for scope in _DEPTH_SCOPES:
        holder = out if scope is None else out.get(scope)
        if isinstance(holder, Mapping) and "layers" in holder:
            original = int(holder["layers"])
            if scope is None:
                out["layers"] = depth
            else:
                out[scope] = {**holder, "layers": depth}
            return out, original
    raise ValueError("the config names no encoder depth (`layers`)")


def _macs_cache_key(entry: ZooEntry) -> str:
    """Changes with the entry's config and with the code that builds and counts it, so a cached count is never
    stale."""
    import inspect

    from paddlemix_eva import layers
    from paddlemix_eva.tasks import flops

    model_module = importlib.import_module(entry.model_class.rpartition(".")[0])
    digest = hashlib.sha256(json.dumps(entry.config, sort_keys=True).encode())
    for module in (flops, layers, model_module):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


@lru_cache(maxsize=None)
def count_image_macs(name: str) -> int:
    """MACs of one image through a zoo model at its input size (see `paddlemix_eva.flops` for what counts).

    Counted on real forwards of the model built with one and with two blocks and extrapolated linearly: every
    block of these encoders costs the same, so this equals the count on the full model (tested) without
    allocating a 4-billion-parameter model to list the zoo. Counts are cached in the weight cache directory.
    """
    return _cached_count("macs", get_entry(name), _count_image_macs)


#: counts of the zoo (parameters, MACs), cached in the weight cache directory
COUNTS_CACHE = "paddlemix_eva_counts.json"


def _cached_count(kind: str, entry: ZooEntry, compute) -> int:
    """`compute(entry)`, cached on disk under a key of the entry's config and the code that builds it."""
    from paddlemix_eva.utils import hub

    cache_file = os.path.join(hub.cache_root(), COUNTS_CACHE)
    key = f"{kind}:{_macs_cache_key(entry)}"
    try:
        with open(cache_file) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached.get(key), int):
        cached[key] = int(compute(entry))
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(cached, f)
        os.replace(tmp, cache_file)
    return int(cached[key])


def _count_image_macs(entry: ZooEntry) -> int:
    from paddlenlp.transformers.model_utils import no_init_weights

    from paddlemix_eva.tasks.flops import count_macs

    model_class = entry.load_class()
    if not model_class.macs_linear_in_depth:
        with no_init_weights(_enable=True):
            encoder, forward = model_class.image_encoder(model_class.config_class(**entry.config))
        return count_macs(encoder, int(entry.image_size), forward).total
    counts = []
    for depth in (1, 2):
        config_fields, full_depth = _with_depth(entry.config, depth)
        with no_init_weights(_enable=True):  # weights do not change the count; skip the upstream init
            encoder, forward = model_class.image_encoder(model_class.config_class(**config_fields))
        counts.append(count_macs(encoder, int(entry.image_size), forward).total)
    return counts[0] + (full_depth - 1) * (counts[1] - counts[0])


def get_model(name: str, pretrained: bool = False, **overrides):
    """Build a zoo model by name; `pretrained=True` loads its published weights (downloaded once and cached)."""
    entry = get_entry(name)
    model_class = entry.load_class()
    if pretrained:
        return model_class.from_pretrained(entry.full_name, **overrides)
    return model_class(build_config(entry, model_class.config_class, **overrides))
