"""Datasets: ImageFolder trees and image-caption manifests.

An image that is missing, truncated or not an image is logged with its path and skipped, so one bad file never
ends a long run. Two policies: `on_error="skip"` returns None (and `collate_skip_invalid` drops it; evaluation
counts only what it could read), `on_error="substitute"` serves the next readable sample instead (training:
batches keep their size, which data-parallel feature gathering needs). Empty or malformed inputs are refused up
front with what was expected.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from PIL import Image

from paddlemix_eva.data.images import read_rgb_or_none

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")
Transform = Callable[[Image.Image], object]


def open_rgb(path: str) -> Optional[Image.Image]:
    """The image at `path` as upright 8-bit RGB, fully decoded (`images.read_rgb`: EXIF orientation, alpha on
    white, 16-bit scaled); None (and a warning naming the file) if it cannot be read or is of an unsupported kind."""
    return read_rgb_or_none(path)


def collate_skip_invalid(samples: Sequence[Optional[tuple]]):
    """Stack a batch of (array, ...) tuples, dropping samples that failed to load. An all-invalid batch gives None."""
    valid = [s for s in samples if s is not None]
    if not valid:
        return None
    columns = list(zip(*valid))
    return [np.stack([np.asarray(v) for v in col]) for col in columns]


def list_image_files(directory: str) -> List[str]:
    """Files under `directory` (recursively, sorted) with an image suffix; other files are reported, not read."""
    if os.path.isfile(directory):
        raise ValueError(f"{directory} is a file, not a folder of images")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"image directory not found: {directory}")
    found, others = [], []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            (found if name.lower().endswith(IMAGE_EXTENSIONS) else others).append(os.path.join(root, name))
    if others:
        logger.warning("ignoring %d files without an image suffix in %s, e.g. %s", len(others), directory, others[0])
    if not found:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {directory}")
    return found


def list_images(source: str) -> List[str]:
    """Image paths of a directory (searched recursively, e.g. an ImageFolder) or of a file list (one path per
    line, relative paths resolved against the list's folder)."""
    if os.path.isdir(source):
        return list_image_files(source)
    if os.path.isfile(source):
        base = os.path.dirname(os.path.abspath(source))
        with open(source, encoding="utf-8") as f:
            paths = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        if not paths:
            raise ValueError(f"{source}: the file list is empty; nothing to train on")
        return [p if os.path.isabs(p) else os.path.join(base, p) for p in paths]
    raise FileNotFoundError(f"training data not found: {source} (expected an image directory or a file list)")


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


class RobustDataset(paddle.io.Dataset):
    """Applies the unreadable-sample policy around `load(index)`, which returns a sample or None."""

    ON_ERROR = ("skip", "substitute")

    def __init__(self, on_error: str = "skip"):
        super().__init__()
        if on_error not in self.ON_ERROR:
            raise ValueError(f"on_error must be one of {self.ON_ERROR}, got {on_error!r}")
        self.on_error = on_error

    def load(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int):
        sample = self.load(index)
        if sample is not None or self.on_error == "skip":
            return sample
        for step in range(1, len(self)):
            sample = self.load((index + step) % len(self))
            if sample is not None:
                return sample
        raise RuntimeError(f"{type(self).__name__}: not a single sample could be read")


#: the last entropy word of batch-level draws (mixup / cutmix), so they never share a stream with a sample's
BATCH_STREAM = 0x6D6978


class SeededSamples:
    """Randomness of training samples as a pure function of (seed, epoch, index), not of a global RNG: it then
    does not depend on how many processes or DataLoader workers load the samples (with `GlobalBatchSampler`, one
    process with batch 2B and two with batch B train on identical global batches), and a resumed run draws exactly
    what an uninterrupted one would. The epoch reaches the dataset through `GlobalBatchSampler.set_epoch`, before
    the DataLoader starts the epoch's workers (which copy the dataset then)."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample_key(self, index: int) -> np.ndarray:
        """(seed, epoch, index) of a sample: it travels with the sample so the collator can derive batch-level
        randomness from it (`batch_rng`)."""
        return np.asarray([self.seed, self.epoch, index], np.int64)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator of every random choice made for sample `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])


def batch_rng(first_key: Sequence[int]) -> np.random.Generator:
    """The generator of a batch's own random choices (mixup / cutmix), from the `sample_key` of its first sample:
    fixed by (seed, epoch, first index) like the samples, and a stream apart from that sample's."""
    return np.random.default_rng([int(v) for v in first_key] + [BATCH_STREAM])


class SeededImageDataset(SeededSamples, RobustDataset):
    """Unlabelled images for self-supervised pre-training (a directory or a file list, see `list_images`).

    A sample's randomness (crop, flip, mask, noise) comes from `sample_rng(index)`, seeded by (seed, epoch, index)
    (see `SeededSamples`). Unreadable images are logged and replaced by the next readable one (batches keep their
    size). Subclasses implement `make_sample(image, rng)`.
    """

    def __init__(self, source: str, seed: int = 0):
        super().__init__(on_error="substitute")
        self.paths = list_images(source)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.paths)

    def make_sample(self, image: Image.Image, rng: np.random.Generator):
        raise NotImplementedError

    def load(self, index: int):
        image = open_rgb(self.paths[index])
        if image is None:
            return None
        return self.make_sample(image, self.sample_rng(index))


class ImageFolder(RobustDataset):
    """Labelled images from an ImageFolder tree: `dataset[i]` is (transformed image, label)."""

    def __init__(
        self,
        root: str,
        transform: Optional[Transform] = None,
        classes: Optional[Sequence[str]] = None,
        on_error: str = "skip",
    ):
        super().__init__(on_error)
        self.root = root
        self.classes, self.samples = scan_image_folder(root, classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int):
        path, label = self.samples[index]
        img = open_rgb(path)
        if img is None:
            return None
        return (self.transform(img) if self.transform else img), np.int64(label)


class SeededImageFolder(SeededSamples, ImageFolder):
    """A training ImageFolder whose augmentation is seeded per sample (see `SeededSamples`): `transform(image,
    rng)` gets `sample_rng(index)`, and `dataset[i]` is (image, label, `sample_key(i)`), the key letting the
    collator seed batch-level randomness (mixup / cutmix, `batch_rng`). Unreadable images are replaced by the next
    readable one."""

    def __init__(self, root: str, transform: Callable[[Image.Image, np.random.Generator], object],
                 classes: Optional[Sequence[str]] = None, on_error: str = "substitute", seed: int = 0):
        super().__init__(root, transform, classes, on_error)
        self.seed = int(seed)

    def load(self, index: int):
        path, label = self.samples[index]
        img = open_rgb(path)
        if img is None:
            return None
        return self.transform(img, self.sample_rng(index)), np.int64(label), self.sample_key(index)


class ImageCaptionPairs(SeededSamples, RobustDataset):
    """(transformed image, token ids) of `self.pairs`, a list of (image path, caption) the subclass reads from its
    file. `transform(image, rng)` gets `sample_rng(index)`, seeded by (seed, epoch, index) (see `SeededSamples`)."""

    #: what a pair is called in the warning about its missing image (a manifest row, a caption)
    pair_name = "pair"

    def __init__(self, pairs: List[Tuple[str, str]], transform: Callable[[Image.Image, np.random.Generator], object],
                 tokenize: Callable[[str], np.ndarray], on_error: str = "substitute", seed: int = 0):
        super().__init__(on_error)
        self.pairs, self.transform, self.tokenize = pairs, transform, tokenize
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int):
        path, caption = self.pairs[index]
        if not os.path.isfile(path):
            logger.warning("skipping missing image %s (%s %d)", path, self.pair_name, index)
            return None
        img = open_rgb(path)
        if img is None:
            return None
        return self.transform(img, self.sample_rng(index)), self.tokenize(caption)[0]


class ImageTextManifest(ImageCaptionPairs):
    """Image-caption pairs from a JSONL (`{"image": path, "caption": text}` per line) or CSV (header with
    `image` and `caption` columns) manifest; relative image paths are resolved against the manifest's folder.
    `dataset[i]` is (transformed image, token ids). `transform(image, rng)` gets a generator seeded by (seed,
    epoch, index), so augmentation does not depend on the number of processes or workers (as for
    `SeededImageDataset`)."""

    pair_name = "manifest row"

    def __init__(self, manifest: str, transform: Callable[[Image.Image, np.random.Generator], object],
                 tokenize: Callable[[str], np.ndarray], image_key: str = "image", caption_key: str = "caption",
                 on_error: str = "substitute", seed: int = 0):
        if not os.path.isfile(manifest):
            raise FileNotFoundError(f"manifest not found: {manifest}")
        base = os.path.dirname(os.path.abspath(manifest))
        rows = self._read_rows(manifest, image_key, caption_key)
        if not rows:
            raise ValueError(f"{manifest}: no image-caption pairs")
        pairs = [(p if os.path.isabs(p) else os.path.join(base, p), c) for p, c in rows]
        super().__init__(pairs, transform, tokenize, on_error, seed)

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
                            f"{manifest}:{lineno}: expected a JSON object with "
                            f"{image_key!r} and {caption_key!r} ({err})"
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


class GlobalBatchSampler(paddle.io.DistributedBatchSampler):
    """Batches of one seeded permutation per epoch, cut into global batches of `batch_size * num_replicas`; rank r
    takes the r-th contiguous part of each. Epoch changes reach the dataset (`set_epoch`) so augmentation follows."""

    def __init__(self, dataset, batch_size: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True):
        super().__init__(dataset, batch_size, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         drop_last=drop_last)
        self.seed = int(seed)
        self.global_batch = batch_size * num_replicas
        total = len(dataset)
        self.num_batches = total // self.global_batch if drop_last else math.ceil(total / self.global_batch)
        if self.num_batches == 0:
            raise ValueError(
                f"{total} images are fewer than one global batch ({batch_size} per device x {num_replicas} "
                "devices); lower the batch size or add data"
            )

    def set_epoch(self, epoch: int = 0, consumed_samples: Optional[int] = None) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def __iter__(self):
        order = np.arange(len(self.dataset))
        if self.shuffle:
            np.random.RandomState(self.seed + self.epoch).shuffle(order)
        for b in range(self.num_batches):
            batch = order[b * self.global_batch : (b + 1) * self.global_batch]
            if len(batch) < self.global_batch:  # last partial batch: pad by wrapping so every rank gets a share
                batch = np.concatenate([batch, order[: self.global_batch - len(batch)]])
            part = batch[self.local_rank * self.batch_size : (self.local_rank + 1) * self.batch_size]
            yield part.tolist()

    def __len__(self) -> int:
        return self.num_batches
