"""COCO / Flickr30k annotations in the Karpathy-split JSON layout that PaddleMIX's EVA-CLIP recipe and BLIP use.

A file is one JSON array. Training splits (`coco_karpathy_train.json`) hold one record per caption
(`{"image": "val2014/x.jpg", "caption": "a dog ...", "image_id": "coco_391895"}`); evaluation splits
(`coco_karpathy_test.json`) hold one record per image with a list of captions (`"caption": ["...", ...]`). Both
read into the same per-image records, in file order (captions of a training image gathered in order of first
appearance). `KarpathyImageText` serves a training split to contrastive training, one sample per caption.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from paddlemix_eva.data.datasets import ImageCaptionPairs

logger = logging.getLogger(__name__)


@dataclass
class CaptionedImage:
    """One image (path as written in the file) with all its captions."""

    image: str
    captions: List[str] = field(default_factory=list)
    image_id: str = ""


def read_karpathy(path: str) -> List[CaptionedImage]:
    """Per-image records of a Karpathy-format annotation file (either layout); refuses anything else, naming
    the record and what it lacks."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); expected a Karpathy-format array of "
                         '{"image": ..., "caption": ...} records (a JSON-lines manifest should be named .jsonl)'
                         ) from err
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected a non-empty JSON array of records, got {type(records).__name__}")
    by_image: Dict[str, CaptionedImage] = {}
    for index, record in enumerate(records):
        image, captions = _fields(record, path, index)
        entry = by_image.setdefault(image, CaptionedImage(image, [], str(record.get("image_id", image))))
        entry.captions.extend(captions)
    return list(by_image.values())


def _fields(record, path: str, index: int):
    if not isinstance(record, dict) or "image" not in record or "caption" not in record:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path}: record {index} ({keys}) lacks 'image' and/or 'caption'; Karpathy records are "
                         '{"image": path, "caption": text or [texts], "image_id": ...}')
    captions = record["caption"]
    captions = [captions] if isinstance(captions, str) else captions
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{path}: record {index}: 'caption' must be a string or a list of strings")
    return str(record["image"]), captions


def resolve_image(image: str, image_root: str) -> str:
    """A record's image path: absolute as written, else under `image_root`."""
    return image if os.path.isabs(image) else os.path.join(image_root, image)


class KarpathyImageText(ImageCaptionPairs):
    """(transformed image, token ids) per (image, caption) pair of a Karpathy-format file, e.g. PaddleMIX's
    default EVA-CLIP data `coco_karpathy_train.json`; image paths are resolved against `image_root` (default: the
    file's folder). As for `ImageTextManifest`, `transform(image, rng)` gets a generator seeded by (seed, epoch,
    index) and a missing or unreadable image is logged and, by default, replaced by the next readable sample."""

    pair_name = "caption"

    def __init__(self, annotation: str, transform: Callable[[Image.Image, np.random.Generator], object],
                 tokenize: Callable[[str], np.ndarray], image_root: Optional[str] = None,
                 on_error: str = "substitute", seed: int = 0):
        records = read_karpathy(annotation)
        self.image_root = image_root if image_root is not None else os.path.dirname(os.path.abspath(annotation))
        pairs: List[Tuple[str, str]] = [
            (resolve_image(r.image, self.image_root), caption) for r in records for caption in r.captions
        ]
        if not pairs:
            raise ValueError(f"{annotation}: its {len(records)} records hold no captions")
        self._check_image_root(annotation, [resolve_image(r.image, self.image_root) for r in records[:8]])
        super().__init__(pairs, transform, tokenize, on_error, seed)

    def _check_image_root(self, annotation: str, first: List[str]) -> None:
        """Refuse a wrong `image_root` up front: otherwise every sample would be reported missing one by one."""
        if not any(os.path.isfile(p) for p in first):
            raise FileNotFoundError(
                f"{annotation}: none of its first {len(first)} images exists under image_root {self.image_root} "
                f"(e.g. {first[0]}); pass image_root= the folder holding the paths the records name"
            )

