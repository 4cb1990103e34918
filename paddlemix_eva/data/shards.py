"""Web-scale image-text pairs from webdataset-layout tar shards, as img2dataset writes them.

A shard is a `.tar` whose members are grouped by key: `{key}.jpg` (or `.jpeg` / `.png` / `.webp`), `{key}.txt`
with the caption and optionally `{key}.json` (its `caption` field is used when there is no `.txt`). Shards are
streamed with the standard library's `tarfile` (`r|*`: nothing is unpacked to disk, `.tar.gz` works too).
Corrupt images, samples without image or caption and truncated or unreadable shards are skipped, counted per
reason and logged (a warning per affected shard, a summary per epoch); one bad shard never ends a run.

We do not use the `webdataset` PyPI package (1.0.2 installs from the registry as pure Python with braceexpand,
numpy and pyyaml), because its rank and worker splitting call `torch.distributed` / `torch.utils.data` and
silently fall back to "one process, one worker" without torch, so every Paddle DataLoader worker would read every
shard, and its pipeline derives from a stand-in for torch's IterableDataset that Paddle's DataLoader does not
recognise. Neither does it resume mid-epoch; the few hundred lines here give Paddle-native splitting and exact,
decode-free resumption.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import paddle
from PIL import Image, UnidentifiedImageError

from paddlemix_eva.data.images import read_rgb

logger = logging.getLogger(__name__)

#: member suffixes read as the sample's image, in order of preference
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
#: why a sample or shard was skipped (the keys of `ImageTextShards.stats`, besides "samples")
SKIP_REASONS = ("corrupt_image", "no_image", "no_caption", "empty_caption", "truncated_shard", "unreadable_shard")
#: a worker logs its running counts after every this many shards (and at each epoch's end)
LOG_EVERY_SHARDS = 100
#: an endless stream gives up after this many passes in a row in which its shards held no usable sample
MAX_EMPTY_EPOCHS = 8
_IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


# ---------------------------------------------------------------------------------------------------- shard lists
def expand_shard_spec(spec: str) -> List[str]:
    """The shard files a spec names: a brace pattern (`shards/{00000..00127}.tar`, zero padding kept, or
    `{a,b}` lists; several groups multiply), a `.txt` list with one shard or pattern per line (relative ones
    resolved against the list's folder, `#` comments), a single tar, or several of these joined by `::`.
    Every shard must exist: the error names the missing ones."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty shard spec {spec!r}; expected e.g. 'shards/{{00000..00127}}.tar' or a .txt list")
    paths: List[str] = []
    for part in spec.split("::"):
        part = part.strip()
        if re.match(r"^[a-z][a-z0-9+]*:", part) and not os.path.exists(part):
            raise ValueError(f"shard spec {part!r}: only local files are read (no URLs or pipe: commands); "
                             "download or mount the shards and pass their paths")
        if part.lower().endswith(".txt") and "{" not in part:
            paths.extend(_read_shard_list(part))
        elif "{" in part or "}" in part:
            paths.extend(expand_braces(part))
        elif part.lower().endswith((".tar", ".tar.gz", ".tgz")):
            paths.append(part)
        else:
            raise ValueError(f"shard spec {part!r}: expected a .tar file, a brace pattern like "
                             "'shards/{00000..00127}.tar' or a .txt file listing one shard per line")
    if not paths:
        raise ValueError(f"shard spec {spec!r} names no shards")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of the {len(paths)} shards of {spec!r} not found: "
                                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return paths


def expand_braces(pattern: str) -> List[str]:
    """Every string a brace pattern stands for, left to right: `{3..5}`, `{008..010}` (padded to the widest
    bound when either bound has a leading zero), `{a,b}`; no nesting."""
    start = pattern.find("{")
    close = pattern.find("}")
    if start < 0 and close < 0:
        return [pattern]
    if start < 0 or close < start:
        raise ValueError(f"shard pattern {pattern!r}: '}}' without a matching '{{'")
    end = pattern.find("}", start)
    if end < 0:
        raise ValueError(f"shard pattern {pattern!r}: '{{' without a closing '}}'")
    body = pattern[start + 1 : end]
    if "{" in body:
        raise ValueError(f"shard pattern {pattern!r}: nested braces are not supported")
    match = _RANGE.match(body)
    if match:
        first, last = match.groups()
        padded = any(len(b) > 1 and b.startswith("0") for b in (first, last))
        width = max(len(first), len(last)) if padded else 0
        step = 1 if int(last) >= int(first) else -1
        items = [str(i).zfill(width) for i in range(int(first), int(last) + step, step)]
    elif "," in body:
        items = body.split(",")
    else:
        raise ValueError(f"shard pattern {pattern!r}: {{{body}}} is neither a range like {{00000..00127}} "
                         "nor a list like {a,b}")
    head, tails = pattern[:start], expand_braces(pattern[end + 1 :])
    return [head + item + tail for item in items for tail in tails]


def _read_shard_list(path: str) -> List[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"shard list not found: {path}")
    base = os.path.dirname(os.path.abspath(path))
    paths: List[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                paths.extend(expand_braces(line if os.path.isabs(line) else os.path.join(base, line)))
    if not paths:
        raise ValueError(f"{path}: the shard list is empty; expected one .tar path per line")
    return paths


# ---------------------------------------------------------------------------------------------------- tar reading
class ShardError(Exception):
    """A shard could not be read to its end; `reason` is 'unreadable_shard' or 'truncated_shard'."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class _EndAwareTarInfo(tarfile.TarInfo):
    """Notes on the archive why reading stopped: stream-mode `tarfile` ends silently at a truncated header too,
    and only an end-of-archive block means the shard was complete."""

    @classmethod
    def fromtarfile(cls, tar):
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as err:
            tar.stop_reason = err
            raise


def split_member_name(name: str) -> Optional[Tuple[str, str]]:
    """(key, suffix) of a member name, webdataset-style: the key is everything up to the first dot of the base
    name (`a/b/000123.jpg` -> ('a/b/000123', 'jpg')); None for names without a suffix or hidden files."""
    folder, base = os.path.split(name)
    if base.startswith(".") or "." not in base:
        return None
    stem, suffix = base.split(".", 1)
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def read_key_groups(path: str) -> Iterator[Tuple[str, Dict[str, bytes]]]:
    """(key, {suffix: bytes}) for each run of consecutive members sharing a key, streaming the tar at `path`.
    Raises `ShardError` after the last complete group when the shard cannot be opened or ends early (the group
    being read when it ended is dropped: it may lack members)."""
    try:
        fileobj = open(path, "rb")
    except OSError as err:
        raise ShardError("unreadable_shard", f"cannot open shard {path}: {err}") from err
    with fileobj:
        try:
            tar = tarfile.open(fileobj=fileobj, mode="r|*", tarinfo=_EndAwareTarInfo)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ShardError("unreadable_shard", f"{path} is not a readable tar archive ({err})") from err
        key, members = None, {}
        try:
            for member in tar:
                parts = split_member_name(member.name) if member.isfile() else None
                if parts is None:
                    continue
                if parts[0] != key:  # a new key: the previous group is complete
                    if key is not None:
                        yield key, members
                    key, members = parts[0], {}
                members[parts[1]] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ShardError("truncated_shard", f"{path} ends early after key {key!r} ({err})") from err
        stop = getattr(tar, "stop_reason", None)
        if key is not None and not isinstance(stop, tarfile.EOFHeaderError):
            raise ShardError("truncated_shard", f"{path} ends without an end-of-archive block after key {key!r}")
        if key is not None:
            yield key, members


def caption_of(members: Dict[str, bytes], caption_key: str = "caption") -> Optional[str]:
    """The sample's caption: its `.txt`, else the `caption_key` field of its `.json`; None if it has neither."""
    if "txt" in members:
        return members["txt"].decode("utf-8", errors="replace")
    if "json" in members:
        try:
            value = json.loads(members["json"].decode("utf-8", errors="replace")).get(caption_key)
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return None


def decode_rgb(data: bytes, name: Optional[str] = None) -> Image.Image:
    """Fully decoded upright 8-bit RGB image of encoded bytes (`images.read_rgb`: EXIF orientation, alpha on
    white, 16-bit scaled); raises one of `_IMAGE_ERRORS` on a corrupt one or one of an unsupported mode."""
    return read_rgb(data, name)


def _header_ok(data: bytes) -> bool:
    """Whether the bytes open as an image (format and size parsed, pixels not decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[0] > 0 and img.size[1] > 0
    except _IMAGE_ERRORS:
        return False


@dataclass
class RawSample:
    """An undecoded sample: where it comes from (shard index in the spec, key ordinal in the shard), its encoded
    image and its caption."""

    key: str
    shard: int
    ordinal: int
    image: bytes
    caption: str


def check_sample(members: Dict[str, bytes], caption_key: str = "caption") -> Tuple[Optional[bytes], str]:
    """(image bytes, caption) of a usable key group, or (None, reason) with one of `SKIP_REASONS`. Cheap: the
    image's header is parsed, its pixels are not decoded."""
    suffix = next((s for s in IMAGE_SUFFIXES if s in members), None)
    if suffix is None:
        return None, "no_image"
    caption = caption_of(members, caption_key)
    if caption is None:
        return None, "no_caption"
    if not caption.strip():
        return None, "empty_caption"
    if not _header_ok(members[suffix]):
        return None, "corrupt_image"
    return members[suffix], caption.strip()


def shuffle_buffer(samples: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """Samples in a locally shuffled order: each output is drawn at random from the next `size` pending ones;
    the rest is shuffled and flushed at the end."""
    buffer: list = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = sample
    rng.shuffle(buffer)
    yield from buffer


# ---------------------------------------------------------------------------------------------------- the dataset
class ImageTextShards(paddle.io.IterableDataset):
    """(transformed image, token ids) pairs streamed from tar shards, split across ranks and DataLoader workers.

    Splitting. The (rank, worker) pair is slot `rank * num_workers + worker` of `world_size * num_workers`
    (workers from `paddle.io.get_worker_info()` inside `__iter__`). With at least as many shards as slots, each
    epoch's shard order (shuffled with (seed, epoch), identical on every rank) is dealt round-robin: slot s reads
    shards s, s + slots, ... (slots may get one shard more than others). With fewer shards than slots, every slot
    reads all shards and keeps the samples whose running key number k has k % slots == s. Either way each sample
    of an epoch goes to exactly one slot.

    Order and randomness. `epochs=None` (for `max_steps` training) streams epoch after epoch, each with a fresh
    shard order and the shuffle buffer (`shuffle_buffer` encoded samples, seeded by (seed, epoch, slot), flushed
    at each epoch's end); `epochs=n` stops after n. `transform(image, rng)` gets a generator seeded by (seed,
    epoch, shard, key ordinal), so augmentation does not depend on ranks, workers or resumption.

    Resumption. Paddle's DataLoader takes batch b from worker b % num_workers (round-robin over the workers still
    running; each worker forms its own batches of its own stream), and a new DataLoader starts again at worker 0.
    So after `resume(batches_consumed=B, batch_size, num_workers=W)` worker w plays the stream of the first run's
    worker r = (w + B) % W, whose batch b >= B came next, and skips the batch_size * |{b < B : b % W == r}|
    usable samples that stream already delivered, reading their tar members without decoding their images. This
    is exact while no worker's stream ran out within the B batches (always so with `epochs=None`), except for
    what only decoding reveals: an image whose header parses but whose pixels are broken was dropped by the first
    run yet counts as delivered when skipping, so a resumed stream repeats at most that many samples (of those
    it skipped) and never skips one. The setting applies to every later iteration until `resume(0, ...)`.

    `stats` counts yielded samples and skips per reason in the process that iterates (a DataLoader worker keeps
    its own counts; it logs them per epoch).
    """

    def __init__(self, spec: str, transform: Callable[[Image.Image, np.random.Generator], object],
                 tokenize: Callable[[str], np.ndarray], seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle_shards: bool = True, shuffle_buffer: int = 0, epochs: Optional[int] = None,
                 caption_key: str = "caption"):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if shuffle_buffer < 0 or (epochs is not None and epochs < 1):
            raise ValueError(f"shuffle_buffer must be >= 0 and epochs None or >= 1, got {shuffle_buffer}, {epochs}")
        self.spec = spec
        self.shards = expand_shard_spec(spec)
        self.transform, self.tokenize = transform, tokenize
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.shuffle_shards, self.shuffle_buffer, self.epochs = shuffle_shards, int(shuffle_buffer), epochs
        self.caption_key = caption_key
        self.epoch = 0
        self.resume_state: Tuple[int, int, int] = (0, 1, 0)
        self.stats: Counter = Counter()

    def __len__(self):
        """A stream has no length (train with `max_steps`); TypeError, unlike Paddle's RuntimeError, lets `list()`
        and length probes treat it as unsized."""
        raise TypeError(f"{type(self).__name__} streams {len(self.shards)} shards and has no length; "
                        "train with max_steps")

    def set_epoch(self, epoch: int) -> None:
        """The epoch the stream starts at (shard order, buffer and augmentation seeds follow it)."""
        self.epoch = int(epoch)

    def resume(self, batches_consumed: int, batch_size: int, num_workers: int) -> None:
        """Start later iterations after the `batches_consumed` batches of `batch_size` that this rank's DataLoader
        with `num_workers` workers (0: loading in the main process) already delivered from the stream's start."""
        if batches_consumed < 0 or batch_size < 1 or num_workers < 0:
            raise ValueError(f"resume needs batches_consumed >= 0, batch_size >= 1, num_workers >= 0; got "
                             f"{batches_consumed}, {batch_size}, {num_workers}")
        self.resume_state = (int(batches_consumed), int(batch_size), int(num_workers))

    # ------------------------------------------------------------------------------------------------ planning
    def _worker(self) -> Tuple[int, int]:
        info = paddle.io.get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def stream_of(self, worker: int, num_workers: int) -> Tuple[int, int]:
        """(whose stream worker `worker` of `num_workers` plays: the first run's worker whose batch comes next in
        this one's turn, how many usable samples of it to skip), following `resume`."""
        batches, batch_size, told = self.resume_state
        if batches and max(told, 1) != num_workers:
            raise ValueError(f"resume() was told num_workers={told} but the DataLoader runs {num_workers} "
                             "worker(s); pass the DataLoader's num_workers")
        role = (worker + batches) % num_workers
        return role, batch_size * len(range(role, batches, num_workers))

    def epoch_plan(self, epoch: int, slot: int, slots: int) -> Tuple[List[int], Optional[Tuple[int, int]]]:
        """(shard indices this slot reads in `epoch`, None) when shards are dealt out, or (all shard indices,
        (slot, slots)) when the slot keeps every slots-th sample instead."""
        order = np.arange(len(self.shards))
        if self.shuffle_shards:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        if len(self.shards) >= slots:
            return order[slot::slots].tolist(), None
        return order.tolist(), (slot, slots)

    # ------------------------------------------------------------------------------------------------ reading
    def raw_samples(self, epoch: int, slot: int, slots: int) -> Iterator[RawSample]:
        """This slot's usable, undecoded samples of `epoch`, in stream order (skips counted and logged)."""
        shards, stride = self.epoch_plan(epoch, slot, slots)
        running = 0
        for done, shard in enumerate(shards):
            if done and done % LOG_EVERY_SHARDS == 0:
                logger.info("rank %d slot %d epoch %d: %d of %d shards read; totals: %s", self.rank, slot, epoch,
                            done, len(shards), _format_counts(self.stats))
            skipped: Counter = Counter()
            path, ordinal, problem = self.shards[shard], -1, ""
            try:
                for ordinal, (key, members) in enumerate(read_key_groups(path)):
                    running += 1
                    if stride is not None and (running - 1) % stride[1] != stride[0]:
                        continue
                    image, caption = check_sample(members, self.caption_key)
                    if image is None:
                        skipped[caption] += 1
                        logger.debug("skipping sample %s of %s: %s", key, path, caption)
                        continue
                    yield RawSample(key, shard, ordinal, image, caption)
            except ShardError as err:
                skipped[err.reason] += 1
                problem = f" ({err}; {ordinal + 1} samples read before)"
            if skipped:
                self.stats.update(skipped)
                logger.warning("shard %s: skipped %s%s", path, _format_counts(skipped), problem)

    def decode(self, raw: RawSample, epoch: int):
        """(transform(image, rng), token ids) of a raw sample, or None (counted) if its image does not decode."""
        try:
            image = decode_rgb(raw.image, raw.key)
        except _IMAGE_ERRORS as err:
            self.stats["corrupt_image"] += 1
            logger.warning("skipping sample %s of %s: image does not decode (%s)", raw.key, self.shards[raw.shard],
                           err)
            return None
        rng = np.random.default_rng([self.seed, epoch, raw.shard, raw.ordinal])
        return self.transform(image, rng), self.tokenize(raw.caption)[0]

    def __iter__(self):
        worker, num_workers = self._worker()
        worker, skip = self.stream_of(worker, num_workers)
        slots, slot = self.world_size * num_workers, self.rank * num_workers + worker
        epoch, empty_in_a_row = self.epoch, 0
        while self.epochs is None or epoch < self.epoch + self.epochs:
            stream = self.raw_samples(epoch, slot, slots)
            if self.shuffle_buffer > 1:
                buffer_rng = np.random.default_rng([self.seed, epoch, slot, 1])
                stream = shuffle_buffer(stream, self.shuffle_buffer, buffer_rng)
            usable = 0
            for raw in stream:
                usable += 1
                if skip:
                    skip -= 1
                    continue
                sample = self.decode(raw, epoch)
                if sample is not None:
                    self.stats["samples"] += 1
                    yield sample
            logger.info("rank %d slot %d epoch %d: %d usable samples; totals: %s", self.rank, slot, epoch, usable,
                        _format_counts(self.stats))
            empty_in_a_row = 0 if usable else empty_in_a_row + 1
            if self.epochs is None and empty_in_a_row >= MAX_EMPTY_EPOCHS:
                raise RuntimeError(f"rank {self.rank} worker {worker} found no usable sample in {empty_in_a_row} "
                                   f"passes over its share of {self.spec!r} ({len(self.shards)} shards for {slots} "
                                   f"rank x worker slots); check the shards or use fewer workers")
            epoch += 1


def _format_counts(counts: Counter) -> str:
    return ", ".join(f"{name} {counts[name]}" for name in ("samples",) + SKIP_REASONS if counts[name]) or "nothing"
