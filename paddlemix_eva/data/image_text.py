"""One entry point for contrastive training data: the dataset class follows from what `--train_data` names."""
from __future__ import annotations

import os
from typing import Callable, Optional, Union

import numpy as np
from PIL import Image

from paddlemix_eva.data.datasets import ImageTextManifest
from paddlemix_eva.data.karpathy import KarpathyImageText
from paddlemix_eva.data.shards import ImageTextShards

ImageTextData = Union[KarpathyImageText, ImageTextManifest, ImageTextShards]


def is_shard_spec(spec: str) -> bool:
    """Whether `spec` names tar shards (a .tar, a brace pattern, a .txt shard list, or `::`-joined ones)."""
    lowered = spec.lower()
    return "{" in spec or "::" in spec or lowered.endswith((".tar", ".tar.gz", ".tgz", ".txt"))


def open_image_text_data(spec: str, transform: Callable[[Image.Image, np.random.Generator], object],
                         tokenize: Callable[[str], np.ndarray], seed: int = 0, rank: int = 0, world_size: int = 1,
                         image_root: Optional[str] = None, image_key: str = "image", caption_key: str = "caption",
                         shuffle_buffer: int = 0, epochs: Optional[int] = None) -> ImageTextData:
    """The dataset `spec` names: `.json` -> `KarpathyImageText` (images under `image_root`, default the file's
    folder), `.jsonl` / `.csv` / `.tsv` -> `ImageTextManifest`, tar shards -> `ImageTextShards` (streamed; it
    splits itself over `rank` / `world_size` and DataLoader workers). The map-style datasets ignore rank and
    world size: their batch sampler splits them. All yield (transformed image, token ids)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"training data must be a path or shard spec, got {spec!r}")
    lowered = spec.lower()
    if image_root is not None and not lowered.endswith(".json"):
        raise ValueError(f"image_root applies to Karpathy .json annotations only, not to {spec!r} (manifests resolve "
                         "relative paths against their own folder, shards hold their images)")
    if is_shard_spec(spec):
        return ImageTextShards(spec, transform, tokenize, seed=seed, rank=rank, world_size=world_size,
                               shuffle_buffer=shuffle_buffer, epochs=epochs, caption_key=caption_key)
    if lowered.endswith(".json"):
        return KarpathyImageText(spec, transform, tokenize, image_root=image_root, seed=seed)
    if lowered.endswith((".jsonl", ".csv", ".tsv")):
        return ImageTextManifest(spec, transform, tokenize, image_key=image_key, caption_key=caption_key, seed=seed)
    kind = "a folder" if os.path.isdir(spec) else f"suffix {os.path.splitext(spec)[1] or '(none)'!r}"
    raise ValueError(
        f"training data {spec!r} ({kind}) is none of the supported forms: a Karpathy-format .json "
        "(coco_karpathy_train.json), a .jsonl/.csv/.tsv image-caption manifest, or webdataset tar shards "
        "(a .tar, a brace pattern like 'shards/{00000..00127}.tar', or a .txt list of shards)"
    )
