"""Files shipped inside the package (class names, prompt templates, BPE vocabulary, a sample image)."""
from __future__ import annotations

import os
from functools import lru_cache
from typing import List

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")


def data_path(name: str) -> str:
    path = os.path.join(DATA_DIR, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"package data file missing: {path} (reinstall paddlemix-eva)")
    return path


def sample_image_path() -> str:
    return data_path("sample.jpg")


@lru_cache(maxsize=None)
def imagenet_classnames() -> List[str]:
    with open(data_path("imagenet_classnames.txt"), encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != 1000:
        raise ValueError(f"{data_path('imagenet_classnames.txt')}: expected 1000 class names, found {len(names)}")
    return names


#: label sets a config may name instead of listing its classes (`class_names: "imagenet-1k"`)
LABEL_SETS = {"imagenet-1k": imagenet_classnames}


def label_set(name: str) -> List[str]:
    if name not in LABEL_SETS:
        raise ValueError(f"class_names {name!r} is no built-in label set ({sorted(LABEL_SETS)}); give a list of names")
    return list(LABEL_SETS[name]())
