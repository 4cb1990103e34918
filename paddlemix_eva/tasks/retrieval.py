"""Image-text retrieval with a CLIP model (EVA-CLIP): Recall@K both ways on a Karpathy-split test set.

Every image of the annotation file is encoded with the model's own evaluation preprocessing and every caption
with its tokenizer; the features are L2-normalised, so a dot product is the cosine similarity. Captions are
flattened image by image, in file order, and `text_image_index[t]` is the row of caption t's image.

Ranks are pessimistic on ties: a candidate that scores the same as the right answer counts as ranked above it,
so ties never earn credit (a degenerate model, every score equal, gets R@1 of 0, never 100 %). An image that
cannot be read is dropped together with its captions (a warning names it; the report counts them under
`skipped_images`).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle

from paddlemix_eva.data.datasets import open_rgb
from paddlemix_eva.data.karpathy import CaptionedImage, read_karpathy, resolve_image
from paddlemix_eva.data.transforms import Preprocessing
from paddlemix_eva.layers.losses import l2_normalize
from paddlemix_eva.utils.checkpoint import atomic_path
from paddlemix_eva.utils.logs import progress

logger = logging.getLogger(__name__)

__all__ = ["encode_retrieval_set", "recall_at_k", "evaluate_retrieval", "load_clip_model", "check_records"]

REPORT_FILE = "retrieval_report.json"
FEATURES_FILE = "features.npz"
#: rough upper bound on the bytes one block of the similarity matrix (and its masks) may take
SIMILARITY_BLOCK_BYTES = 256 * 2**20
_BYTES_PER_SCORE = 16  # float32 score + boolean comparison / mask temporaries

Features = Tuple[np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------- inputs
def load_clip_model(name_or_dir: str) -> paddle.nn.Layer:
    """A zoo name or saved directory as a CLIP model in eval mode; anything without a text tower is refused
    before its weights are read."""
    from paddlemix_eva import zoo

    model_class = zoo.model_class_for(name_or_dir)
    if not getattr(model_class, "is_zero_shot_classifier", False):
        raise ValueError(f"{name_or_dir} is a {model_class.__name__}, not an image-text model: retrieval needs a "
                         "CLIP model (EVA-CLIP) with both an image and a text encoder")
    return model_class.from_pretrained(name_or_dir).eval()


def check_records(records: Sequence[CaptionedImage], source: str = "the annotations") -> None:
    """Refuse a set that retrieval cannot score: no images, or an image without a caption (its image-to-text
    rank would be undefined)."""
    if not records:
        raise ValueError(f"{source}: no images to evaluate")
    bare = [r.image for r in records if not r.captions]
    if bare:
        raise ValueError(f"{source}: {len(bare)} image(s) have no caption, e.g. {bare[:3]}; every image of a "
                         "retrieval test set needs at least one caption")


def _context_length(model) -> Optional[int]:
    text_config = getattr(getattr(model, "config", None), "text_config", None)
    return getattr(text_config, "context_length", None)


# --------------------------------------------------------------------------------------------- encoding
def _encode_images(model, paths: Sequence[str], transform, batch_size: int) -> Tuple[np.ndarray, List[int]]:
    """Normalised features of the readable images and the positions (in `paths`) they came from."""
    features: List[np.ndarray] = []
    kept: List[int] = []
    batch: List[np.ndarray] = []
    batch_rows: List[int] = []

    def flush():
        if batch:
            out = l2_normalize(model.encode_image(paddle.to_tensor(np.stack(batch))))
            features.append(out.astype("float32").numpy())
            kept.extend(batch_rows)
            batch.clear()
            batch_rows.clear()

    for row, path in enumerate(progress(paths, f"encoding {len(paths)} images", unit="image")):
        image = open_rgb(path)
        if image is None:
            continue
        batch.append(transform(image))
        batch_rows.append(row)
        if len(batch) == batch_size:
            flush()
    flush()
    if not kept:
        raise ValueError(f"none of the {len(paths)} images could be read (first: {paths[0]}); check --image_root")
    return np.concatenate(features), kept


def _encode_texts(model, texts: Sequence[str], tokenizer, batch_size: int) -> np.ndarray:
    length = _context_length(model)
    features = []
    for start in progress(range(0, len(texts), batch_size), f"encoding {len(texts)} captions", unit="batch"):
        chunk = list(texts[start : start + batch_size])
        ids = tokenizer(chunk, context_length=length) if length else tokenizer(chunk)
        out = l2_normalize(model.encode_text(paddle.to_tensor(ids)))
        features.append(out.astype("float32").numpy())
    return np.concatenate(features)


@paddle.no_grad()
def encode_retrieval_set(
    model,
    records: Sequence[CaptionedImage],
    image_root: str,
    transform=None,
    tokenizer=None,
    batch_size: int = 64,
) -> Features:
    """(image_features [N_img, D], text_features [N_txt, D], text_image_index [N_txt]): normalised float32, in
    annotation order, captions flattened image by image. `transform` defaults to the model's declared evaluation
    preprocessing, `tokenizer` to EVA-CLIP's. Unreadable images are dropped with their captions (warned)."""
    check_records(records)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if transform is None:
        transform = Preprocessing.from_config(model.config).eval_transform()
    if tokenizer is None:
        from paddlemix_eva.models.evaclip import get_tokenizer

        tokenizer = get_tokenizer()
    was_training = model.training
    model.eval()
    try:
        paths = [resolve_image(r.image, image_root) for r in records]
        image_features, kept = _encode_images(model, paths, transform, batch_size)
        dropped = len(records) - len(kept)
        if dropped:
            logger.warning("%d of %d images could not be read; they and their captions are left out", dropped,
                           len(records))
        texts = [caption for row in kept for caption in records[row].captions]
        index = np.concatenate([np.full(len(records[row].captions), i, np.int64) for i, row in enumerate(kept)])
        text_features = _encode_texts(model, texts, tokenizer, batch_size)
    finally:
        model.train(was_training)
    return image_features, text_features, index


# --------------------------------------------------------------------------------------------- recall
def _check_features(image_features: np.ndarray, text_features: np.ndarray, text_image_index: np.ndarray) -> None:
    if image_features.ndim != 2 or text_features.ndim != 2 or image_features.shape[1] != text_features.shape[1]:
        raise ValueError(f"expected image features [N_img, D] and text features [N_txt, D] of the same D, got "
                         f"{list(image_features.shape)} and {list(text_features.shape)}")
    if text_image_index.shape != (text_features.shape[0],):
        raise ValueError(f"text_image_index has shape {list(text_image_index.shape)}; expected one image row per "
                         f"caption, [{text_features.shape[0]}]")
    num_images = image_features.shape[0]
    if num_images == 0 or text_features.shape[0] == 0:
        raise ValueError("retrieval needs at least one image and one caption")
    if text_image_index.min() < 0 or text_image_index.max() >= num_images:
        raise ValueError(f"text_image_index holds values outside 0..{num_images - 1} (the image rows)")
    uncaptioned = np.setdiff1d(np.arange(num_images), text_image_index)
    if uncaptioned.size:
        raise ValueError(f"image rows {uncaptioned[:5].tolist()} have no caption in text_image_index; every image "
                         "needs one for image-to-text recall")
    if not (np.isfinite(image_features).all() and np.isfinite(text_features).all()):
        raise ValueError("the features contain NaN or Inf; the model's output is not usable for ranking")


def _block_rows(columns: int, chunk_size: Optional[int]) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        return chunk_size
    return max(1, SIMILARITY_BLOCK_BYTES // (_BYTES_PER_SCORE * max(1, columns)))


def _image_to_text_ranks(image_features, text_features, text_image_index, rows_per_block) -> np.ndarray:
    """Per image: how many captions of other images score at least as high as its best caption."""
    ranks = []
    for start in range(0, image_features.shape[0], rows_per_block):
        scores = image_features[start : start + rows_per_block] @ text_features.T
        own = text_image_index[None, :] == np.arange(start, start + scores.shape[0])[:, None]
        best = np.where(own, scores, -np.inf).max(axis=1)
        ranks.append(((scores >= best[:, None]) & ~own).sum(axis=1))
    return np.concatenate(ranks)


def _text_to_image_ranks(image_features, text_features, text_image_index, rows_per_block) -> np.ndarray:
    """Per caption: how many other images score at least as high as its own image."""
    ranks = []
    for start in range(0, text_features.shape[0], rows_per_block):
        scores = text_features[start : start + rows_per_block] @ image_features.T
        target = text_image_index[start : start + scores.shape[0]]
        right = scores[np.arange(scores.shape[0]), target]
        ranks.append((scores >= right[:, None]).sum(axis=1) - 1)  # the right image itself always ties
    return np.concatenate(ranks)


def recall_at_k(
    image_features: np.ndarray,
    text_features: np.ndarray,
    text_image_index: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: Optional[int] = None,
) -> Dict[str, Dict[str, float]]:
    """Recall@K in percent, `{"image_to_text": {"R@1": ...}, "text_to_image": {...}}`, scoring by dot product.

    Image-to-text: a hit when any of the image's captions is in the top K. Text-to-image: a hit when the caption's
    image is in the top K. Ties count against the right answer. The similarity matrix is built `chunk_size` rows
    at a time (default: blocks of about `SIMILARITY_BLOCK_BYTES`), never whole."""
    image_features = np.asarray(image_features, np.float32)
    text_features = np.asarray(text_features, np.float32)
    text_image_index = np.asarray(text_image_index).astype(np.int64, copy=False)
    _check_features(image_features, text_features, text_image_index)
    bad_ks = [k for k in ks if int(k) != k or k < 1]
    if not ks or bad_ks:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    i2t = _image_to_text_ranks(image_features, text_features, text_image_index,
                               _block_rows(text_features.shape[0], chunk_size))
    t2i = _text_to_image_ranks(image_features, text_features, text_image_index,
                               _block_rows(image_features.shape[0], chunk_size))
    return {
        "image_to_text": {f"R@{int(k)}": float(100.0 * (i2t < k).mean()) for k in ks},
        "text_to_image": {f"R@{int(k)}": float(100.0 * (t2i < k).mean()) for k in ks},
    }


# --------------------------------------------------------------------------------------------- evaluation
def _write_json(report: dict, path: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


def _write_features(features: Features, path: str) -> None:
    image_features, text_features, text_image_index = features
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, image_features=image_features, text_features=text_features,
                     text_image_index=text_image_index)


def evaluate_retrieval(
    model: Union[str, paddle.nn.Layer],
    ann_path: str,
    image_root: str,
    output_dir: Optional[str] = None,
    batch_size: int = 64,
    save_features: bool = False,
) -> Dict[str, object]:
    """Recall@1/5/10 both ways of `model` (zoo name, directory or loaded CLIP model) on a Karpathy-format test
    file; the report goes to `output_dir/retrieval_report.json`, the features (with `save_features`) to
    `output_dir/features.npz`. The annotations are checked before the model is loaded."""
    if save_features and not output_dir:
        raise ValueError("save_features needs an output_dir to write features.npz to")
    records = read_karpathy(ann_path)
    check_records(records, ann_path)
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"image root not found: {image_root} (the folder the annotation's image paths are "
                                "relative to)")
    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = load_clip_model(model)
    features = encode_retrieval_set(model, records, image_root, batch_size=batch_size)
    report: Dict[str, object] = dict(recall_at_k(*features))
    report.update(num_images=int(features[0].shape[0]), num_texts=int(features[1].shape[0]),
                  skipped_images=len(records) - int(features[0].shape[0]), model=name)
    logger.info("retrieval over %d images / %d captions: image->text R@1 %.2f R@5 %.2f R@10 %.2f; text->image R@1 "
                "%.2f R@5 %.2f R@10 %.2f", report["num_images"], report["num_texts"],
                *report["image_to_text"].values(), *report["text_to_image"].values())
    if output_dir:
        path = os.path.join(output_dir, REPORT_FILE)
        _write_json(report, path)
        logger.info("retrieval report written to %s", os.path.abspath(path))
        if save_features:
            path = os.path.join(output_dir, FEATURES_FILE)
            _write_features(features, path)
            logger.info("features written to %s", os.path.abspath(path))
    return report
