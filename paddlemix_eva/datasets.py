"""Datasets: ImageFolder / file lists of images and image-caption manifests.

An image that is missing, truncated or not an image is logged with its path and skipped (the sample comes back
as `None` and `collate_skip_invalid` drops it from the batch), so one bad file never ends a long run. Empty or
malformed inputs are refused up front with what was expected.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")
Transform = Callable[[Image.Image], object]


def open_rgb(path: str) -> Optional[Image.Image]:
    """The image at `path` as RGB, fully decoded; None (and a warning naming the file) if it cannot be read."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        logger.warning("skipping unreadable image %s (%s)", path, err)
        return None


def collate_skip_invalid(samples: Sequence[Optional[tuple]]):
    """Stack a batch of (array, ...) tuples, dropping samples that failed to load. An all-invalid batch gives None."""
    valid = [s for s in samples if s is not None]
    if not valid:
        return None
    columns = list(zip(*valid))
    return [np.stack([np.asarray(v) for v in col]) for col in columns]


def scan_image_folder(root: str, classes: Optional[Sequence[str]] = None) -> Tuple[List[str], List[Tuple[str, int]]]:
    """(class names, [(path, label)]) of `root/<class>/**/<image>`; labels index the sorted class folders."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    found = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    elif sorted(classes) != found:
        raise ValueError(
            f"{root}: its class folders {found[:10]}{'...' if len(found) > 10 else ''} differ from the expected "
            f"classes {list(classes)[:10]}{'...' if len(classes) > 10 else ''}"
        )
    if not classes:
        raise ValueError(f"{root}: no class sub-folders; expected an ImageFolder layout root/<class>/<image>")
    samples = []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    samples.append((os.path.join(dirpath, file), label))
    if not samples:
        raise ValueError(f"{root}: no images (extensions {IMAGE_EXTENSIONS}) in its {len(classes)} class folders")
    return list(classes), samples


class ImageFolder(paddle.io.Dataset):
    """Labelled images from an ImageFolder tree: `dataset[i]` is (transformed image, label) or None if unreadable."""

    def __init__(self, root: str, transform: Optional[Transform] = None, classes: Optional[Sequence[str]] = None):
        super().__init__()
        self.root = root
        self.classes, self.samples = scan_image_folder(root, classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        img = open_rgb(path)
        if img is None:
            return None
        return (self.transform(img) if self.transform else img), np.int64(label)


class ImageTextManifest(paddle.io.Dataset):
    """Image-caption pairs from a JSONL (`{"image": path, "caption": text}` per line) or CSV (header with
    `image` and `caption` columns) manifest; relative image paths are resolved against the manifest's folder.
    `dataset[i]` is (transformed image, token ids) or None if the image is missing or unreadable."""

    def __init__(self, manifest: str, transform: Transform, tokenize: Callable[[str], np.ndarray],
                 image_key: str = "image", caption_key: str = "caption"):
        super().__init__()
        if not os.path.isfile(manifest):
            raise FileNotFoundError(f"manifest not found: {manifest}")
        base = os.path.dirname(os.path.abspath(manifest))
        rows = self._read_rows(manifest, image_key, caption_key)
        if not rows:
            raise ValueError(f"{manifest}: no image-caption pairs")
        self.pairs = [(p if os.path.isabs(p) else os.path.join(base, p), c) for p, c in rows]
        self.transform = transform
        self.tokenize = tokenize

    @staticmethod
    def _read_rows(manifest: str, image_key: str, caption_key: str) -> List[Tuple[str, str]]:
        rows: List[Tuple[str, str]] = []
        with open(manifest, encoding="utf-8", newline="") as f:
            if manifest.lower().endswith((".jsonl", ".json")):
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                        rows.append((str(record[image_key]), str(record[caption_key])))
                    except (json.JSONDecodeError, KeyError, TypeError) as err:
                        raise ValueError(
                            f"{manifest}:{lineno}: expected a JSON object with {image_key!r} and {caption_key!r} ({err})"
                        ) from err
            elif manifest.lower().endswith((".csv", ".tsv")):
                reader = csv.DictReader(f, delimiter="\t" if manifest.lower().endswith(".tsv") else ",")
                missing = {image_key, caption_key} - set(reader.fieldnames or [])
                if missing:
                    raise ValueError(f"{manifest}: header {reader.fieldnames} lacks column(s) {sorted(missing)}")
                rows = [(r[image_key], r[caption_key]) for r in reader]
            else:
                raise ValueError(f"{manifest}: manifest must be .jsonl or .csv/.tsv")
        return rows

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        path, caption = self.pairs[index]
        if not os.path.isfile(path):
            logger.warning("skipping missing image %s (manifest row %d)", path, index)
            return None
        img = open_rgb(path)
        if img is None:
            return None
        return self.transform(img), self.tokenize(caption)[0]
