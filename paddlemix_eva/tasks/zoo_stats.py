"""Parameters and MACs of zoo models, as `paddlemix-eva list` shows them, counted on built models and cached in
the weight cache directory (only the first listing builds the models)."""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from typing import Callable, Union

from paddlemix_eva import layers, zoo
from paddlemix_eva.tasks import flops
from paddlemix_eva.utils import hub
from paddlemix_eva.utils.compat import no_init_weights
from paddlemix_eva.zoo.entry import ZooEntry

#: counts of the zoo (parameters, MACs), cached in the weight cache directory
COUNTS_CACHE = "paddlemix_eva_counts.json"


def _entry(name_or_entry: Union[str, ZooEntry]) -> ZooEntry:
    return name_or_entry if isinstance(name_or_entry, ZooEntry) else zoo.get_entry(name_or_entry)


def count_parameters(name_or_entry: Union[str, ZooEntry]) -> int:
    """Parameters of a zoo model, counted on a lazily built instance (no weights allocated)."""
    return _cached_count("params", _entry(name_or_entry), _count_parameters)


@lru_cache(maxsize=None)
def count_image_macs(name: str) -> int:
    """MACs of one image through a zoo model at its input size (see `paddlemix_eva.tasks.flops` for what counts).

    Counted on real forwards of the model built with one and with two blocks and extrapolated linearly: every
    block of these encoders costs the same, so this equals the count on the full model (tested) without
    allocating a 4-billion-parameter model to list the zoo. Models whose blocks differ (token pruning) are counted
    whole.
    """
    return _cached_count("macs", zoo.get_entry(name), _count_image_macs)


def _count_parameters(entry: ZooEntry) -> int:
    from paddlemix_eva.models.modeling_utils import count_parameters as count

    model_class = entry.load_class()
    return count(model_class.build_lazily(zoo.build_config(entry, model_class.config_class)))


def _count_image_macs(entry: ZooEntry) -> int:
    model_class = entry.load_class()
    if not model_class.macs_linear_in_depth:
        with no_init_weights():
            encoder, forward = model_class.image_encoder(model_class.config_class(**entry.config))
        return flops.count_macs(encoder, entry.input_size, forward).total
    counts = []
    for depth in (1, 2):
        fields, full_depth = model_class.config_with_depth(entry.config, depth)
        with no_init_weights():  # weights do not change the count; skip the upstream init
            encoder, forward = model_class.image_encoder(model_class.config_class(**fields))
        counts.append(flops.count_macs(encoder, entry.input_size, forward).total)
    return counts[0] + (full_depth - 1) * (counts[1] - counts[0])


def _cache_key(entry: ZooEntry) -> str:
    """Changes with the entry's config and with the code that builds and counts it, so a cached count is never
    stale."""
    digest = hashlib.sha256(json.dumps(entry.config, sort_keys=True, default=str).encode())
    digest.update(_counting_code_digest().encode())
    return digest.hexdigest()


@lru_cache(maxsize=None)
def _counting_code_digest() -> str:
    """sha256 over every source file a count depends on: the blocks, the model families and the counter."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [os.path.abspath(flops.__file__)]
    for folder in (os.path.dirname(os.path.abspath(layers.__file__)), os.path.join(package, "models")):
        for root, _, names in os.walk(folder):
            files += [os.path.join(root, name) for name in names if name.endswith(".py")]
    digest = hashlib.sha256()
    for path in sorted(files):
        with open(path, "rb") as f:
            digest.update(os.path.relpath(path, package).encode() + b"\0" + f.read())
    return digest.hexdigest()


def _cached_count(kind: str, entry: ZooEntry, compute: Callable[[ZooEntry], int]) -> int:
    """`compute(entry)`, cached on disk under a key of the entry's config and the code that builds it."""
    cache_file = os.path.join(hub.cache_root(), COUNTS_CACHE)
    key = f"{kind}:{_cache_key(entry)}"
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
