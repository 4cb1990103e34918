"""Classification evaluation that counts every sample exactly once, on one process or many.

Each rank scores a contiguous share of the dataset (no padding with repeated samples, no batch dropped); the
(index, logits, label) triples are gathered and the metrics computed over the union. Unreadable images are
logged by the dataset and reported as skipped.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.distributed as dist

from paddlemix_eva.utils.errors import check_at_least_one
from paddlemix_eva.utils.logs import progress
from paddlemix_eva.utils.processes import worker_init_fn

logger = logging.getLogger(__name__)


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per sample: is the label among the k largest logits (k capped at the number of classes)."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def classification_metrics(
    logits: np.ndarray, labels: np.ndarray, class_names: Optional[Sequence[str]] = None
) -> Dict[str, object]:
    """top-1 / top-5 (%) and per-class accuracy of `logits` [N, C] against `labels` [N]."""
    labels = np.asarray(labels).reshape(-1)
    correct1 = topk_correct(logits, labels, 1)
    per_class = {}
    for c in range(logits.shape[1]):
        members = labels == c
        name = class_names[c] if class_names is not None else str(c)
        per_class[name] = {
            "count": int(members.sum()),
            "top1": float(100.0 * correct1[members].mean()) if members.any() else None,
        }
    return {
        "top1": float(100.0 * correct1.mean()),
        "top5": float(100.0 * topk_correct(logits, labels, 5).mean()),
        "num_samples": int(len(labels)),
        "per_class": per_class,
    }


def rank_share(num_samples: int, rank: int, world: int) -> np.ndarray:
    """The contiguous block of indices rank `rank` of `world` evaluates (blocks differ in size by at most one)."""
    return np.array_split(np.arange(num_samples), world)[rank]


class _Subset(paddle.io.Dataset):
    def __init__(self, dataset, indices: np.ndarray):
        super().__init__()
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        sample = self.dataset[int(self.indices[i])]
        return None if sample is None else (sample[0], sample[1], np.int64(self.indices[i]))


def _collate(samples):
    valid = [s for s in samples if s is not None]
    if not valid:
        return None
    images, labels, indices = zip(*valid)
    return np.stack(images), np.asarray(labels, np.int64), np.asarray(indices, np.int64)


def autocast(model, precision: Optional[str], level: str = "O1"):
    """The forward's precision context: float32 (a no-op) or Paddle's autocast to float16 / bfloat16 (CUDA); level
    O2 casts the model's weights too, as PaddleNLP's `--fp16_opt_level O2` does."""
    if precision is None:
        return contextlib.nullcontext()
    if level == "O2":
        paddle.amp.decorate(models=model, level="O2", dtype=precision)
    return paddle.amp.auto_cast(enable=True, level=level, dtype=precision)


@paddle.no_grad()
def predict(model, dataset, batch_size: int = 64, num_workers: int = 0, precision: Optional[str] = None,
            amp_level: str = "O1") -> Dict[str, np.ndarray]:
    """Logits of every readable sample, gathered over all ranks: {"indices", "logits", "labels"} sorted by index."""
    check_at_least_one(batch_size, "batch_size")
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    share = _Subset(dataset, rank_share(len(dataset), rank, world))
    loader = paddle.io.DataLoader(share, batch_size=batch_size, shuffle=False, drop_last=False,
                                  num_workers=num_workers, collate_fn=_collate, worker_init_fn=worker_init_fn())
    was_training = model.training
    model.eval()
    indices: List[np.ndarray] = []
    logits: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    for batch in progress(loader, f"evaluating {len(share)} images", unit="batch"):
        if batch is None:
            continue
        images, batch_labels, batch_indices = batch
        with autocast(model, precision, amp_level):
            batch_logits = model(paddle.to_tensor(images))
        logits.append(batch_logits.astype("float32").numpy())
        labels.append(batch_labels)
        indices.append(batch_indices)
    model.train(was_training)
    local = {
        "indices": np.concatenate(indices) if indices else np.zeros([0], np.int64),
        "logits": np.concatenate(logits) if logits else None,
        "labels": np.concatenate(labels) if labels else np.zeros([0], np.int64),
    }
    if world > 1:
        parts: list = []
        dist.all_gather_object(parts, local)
    else:
        parts = [local]
    parts = [p for p in parts if p["logits"] is not None]
    if not parts:
        raise ValueError("no readable images to evaluate")
    merged = {k: np.concatenate([p[k] for p in parts]) for k in ("indices", "logits", "labels")}
    order = np.argsort(merged["indices"])
    return {k: v[order] for k, v in merged.items()}


def evaluate_classifier(model, dataset, batch_size: int = 64, num_workers: int = 0,
                        class_names: Optional[Sequence[str]] = None, precision: Optional[str] = None,
                        amp_level: str = "O1") -> Dict[str, object]:
    """top-1 / top-5 / per-class accuracy over every readable sample of `dataset` ((image, label) pairs)."""
    out = predict(model, dataset, batch_size, num_workers, precision, amp_level)
    if len(np.unique(out["indices"])) != len(out["indices"]):
        raise RuntimeError("a sample was evaluated twice; the rank shares overlap")
    metrics = classification_metrics(out["logits"], out["labels"], class_names)
    if out["logits"].shape[1] <= 5:
        logger.info("top-5 over %d classes counts every sample as correct (k >= number of classes)",
                    out["logits"].shape[1])
    metrics["skipped"] = len(dataset) - metrics["num_samples"]
    if metrics["skipped"]:
        logger.warning("%d of %d images could not be read and were skipped", metrics["skipped"], len(dataset))
    return metrics


def write_report(metrics: Dict[str, object], path: str) -> None:
    """The metrics as JSON (per-class accuracy included), written atomically."""
    from paddlemix_eva.utils.checkpoint import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
    logger.info("evaluation report written to %s", os.path.abspath(path))
