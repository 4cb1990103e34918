"""Zero-shot classification with a CLIP model: prompt-ensemble class embeddings and top-k accuracy.

Per class every template is filled, encoded, L2-normalised; the mean is renormalised (CLIP's prompt ensemble).
Logits are 100 x cosine (a fixed 100, not the learned scale). Class embeddings are cached on disk under a key
that hashes the text tower's weights, the class names and the templates, so a cache is never reused for another
model or label set.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import paddle

from paddlemix_eva.data.datasets import collate_skip_invalid
from paddlemix_eva.data.transforms import Preprocessing
from paddlemix_eva.layers.losses import l2_normalize
from paddlemix_eva.tasks.evaluation import topk_correct
from paddlemix_eva.utils.checkpoint import atomic_path
from paddlemix_eva.utils.logs import progress
from paddlemix_eva.utils.processes import worker_init_fn
from paddlemix_eva.utils.resources import data_path, imagenet_classnames
from paddlemix_eva.utils.serialization import load_npy

logger = logging.getLogger(__name__)
LOGIT_SCALE = 100.0


def read_lines(path: str, what: str) -> List[str]:
    """The non-empty lines of a `what` file (class names, templates), stripped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path} (expected one entry per line)")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise ValueError(f"{path}: the {what} file is empty")
    return lines


def imagenet_templates() -> List[str]:
    return read_lines(data_path("imagenet_templates.txt"), "templates")


def check_prompts(classnames: Sequence[str], templates: Sequence[str]) -> None:
    if not classnames:
        raise ValueError("zero-shot classification needs at least one class name; the class list is empty")
    if not templates:
        raise ValueError("zero-shot classification needs at least one prompt template; the template list is empty")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"every template must contain '{{}}' where the class name goes; these do not: {bad[:5]}")


def text_tower_fingerprint(model) -> str:
    """sha256 over the names, shapes and bytes of every text-tower parameter (what the class embeddings depend on)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.text.state_dict().items()):
        array = np.ascontiguousarray(tensor.numpy())
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def classifier_cache_key(model, classnames: Sequence[str], templates: Sequence[str]) -> str:
    digest = hashlib.sha256(text_tower_fingerprint(model).encode())
    for item in ("classes", *classnames, "templates", *templates):
        digest.update(item.encode("utf-8") + b"\0")
    return digest.hexdigest()[:32]


@paddle.no_grad()
def build_classifier(
    model,
    classnames: Sequence[str],
    templates: Sequence[str],
    tokenizer=None,
    batch_size: int = 256,
    cache_dir: Optional[str] = None,
) -> np.ndarray:
    """[embed_dim, num_classes] normalised class embeddings, read from / written to `cache_dir` when given."""
    check_prompts(classnames, templates)
    cache_file = None
    if cache_dir:
        cache_file = os.path.join(cache_dir,
                                  f"zeroshot_classifier_{classifier_cache_key(model, classnames, templates)}.npy")
        if os.path.isfile(cache_file):
            logger.info("using cached class embeddings %s", cache_file)
            return load_npy(cache_file)
    if tokenizer is None:
        from paddlemix_eva.models.evaclip.tokenizer import get_tokenizer

        tokenizer = get_tokenizer()
    was_training = model.training
    model.eval()
    prompts = [template.format(name) for name in classnames for template in templates]
    context = model.config.text_config.context_length  # a tower trained at a shorter context takes no more
    embeddings = []
    for start in progress(range(0, len(prompts), batch_size), f"encoding {len(prompts)} prompts", unit="batch"):
        ids = paddle.to_tensor(tokenizer(prompts[start : start + batch_size], context_length=context))
        embeddings.append(l2_normalize(model.encode_text(ids)).numpy())
    per_prompt = np.concatenate(embeddings).reshape(len(classnames), len(templates), -1)
    mean = per_prompt.mean(axis=1)
    classifier = (mean / np.linalg.norm(mean, axis=-1, keepdims=True)).T.astype(np.float32)
    model.train(was_training)
    if cache_file:
        with atomic_path(cache_file) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, classifier)
        logger.info("cached class embeddings in %s", cache_file)
    return classifier


@paddle.no_grad()
def evaluate(model, dataset, classifier: np.ndarray, batch_size: int = 64, num_workers: int = 0) -> Dict[str, float]:
    """Top-1 / top-5 (%) of zero-shot predictions over every readable sample of `dataset` ((image, label) pairs)."""
    loader = paddle.io.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, drop_last=False, num_workers=num_workers,
        collate_fn=collate_skip_invalid, worker_init_fn=worker_init_fn(),
    )
    weights = paddle.to_tensor(classifier)
    model.eval()
    hits1, hits5, count = 0, 0, 0
    for batch in progress(loader, f"zero-shot evaluation of {len(dataset)} images", unit="batch"):
        if batch is None:
            continue
        images, labels = batch
        features = l2_normalize(model.encode_image(paddle.to_tensor(images)))
        logits = (LOGIT_SCALE * features @ weights.astype(features.dtype)).numpy()
        labels = np.asarray(labels).reshape(-1)
        hits1 += int(topk_correct(logits, labels, 1).sum())
        hits5 += int(topk_correct(logits, labels, 5).sum())
        count += len(labels)
    if count == 0:
        raise ValueError("no readable images to evaluate")
    skipped = len(dataset) - count
    if skipped:
        logger.warning("%d of %d images could not be read and were skipped", skipped, len(dataset))
    return {"top1": 100.0 * hits1 / count, "top5": 100.0 * hits5 / count, "num_samples": count, "skipped": skipped}


def default_classnames() -> List[str]:
    return list(imagenet_classnames())


@dataclass(frozen=True)
class ZeroShotHeadConfig:
    """What inference reads from a classifier's config, for a CLIP model turned into one."""

    class_names: Sequence[str]
    preprocessing: Preprocessing

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    def label_names(self) -> List[str]:
        return list(self.class_names)


class ZeroShotClassifier(paddle.nn.Layer):
    """A CLIP model and the prompt-ensemble embeddings of `class_names`: `forward(image)` gives 100 x cosine
    logits, so `inference_model` and `evaluate_classifier` take it like any classifier."""

    is_classifier = True

    def __init__(self, clip_model, class_names: Sequence[str], templates: Optional[Sequence[str]] = None,
                 cache_dir: Optional[str] = None):
        super().__init__()
        self.clip = clip_model
        templates = list(templates) if templates is not None else imagenet_templates()
        weights = build_classifier(clip_model, list(class_names), templates, cache_dir=cache_dir)
        self.register_buffer("class_embeddings", paddle.to_tensor(weights), persistable=False)
        self.config = ZeroShotHeadConfig(tuple(class_names), clip_model.config.preprocessing)

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        features = l2_normalize(self.clip.encode_image(image))
        return LOGIT_SCALE * features @ self.class_embeddings.astype(features.dtype)


def zero_shot_classifier(model_or_name, class_names: Sequence[str], templates: Optional[Sequence[str]] = None,
                         cache_dir: Optional[str] = None) -> ZeroShotClassifier:
    """A zoo name, directory or loaded CLIP model as a classifier over `class_names` (the 80 ImageNet templates
    by default)."""
    model = model_or_name
    if isinstance(model_or_name, str):
        from paddlemix_eva import zoo

        model_class = zoo.model_class_for(model_or_name)
        if not getattr(model_class, "is_zero_shot_classifier", False):
            raise ValueError(f"{model_or_name} is a {model_class.__name__}, not a CLIP model: zero-shot labels need an "
                             "image-text model (EVA-CLIP); a classifier predicts its own classes without --labels")
        model = model_class.from_pretrained(model_or_name)
    return ZeroShotClassifier(model.eval(), class_names, templates, cache_dir)


#: what a `--labels` value that names a file ends with
LABEL_FILE_SUFFIXES = (".txt", ".json", ".csv")


def parse_labels(value: str) -> List[str]:
    """`--labels`: comma-separated class names, or a text file with one name per line. A value that looks like a
    file name (ends with .txt / .json / .csv, or holds a path separator and no comma) must be an existing file;
    zero-shot needs at least two distinct names."""
    if os.path.isfile(value):
        names, source = read_lines(value, "class names"), f"--labels {value}"
    elif value.lower().endswith(LABEL_FILE_SUFFIXES) or ("," not in value and any(
            sep in value for sep in {"/", os.sep, os.altsep} - {None})):
        raise FileNotFoundError(f"--labels {value}: no such file (expected class names separated by commas, e.g. "
                                "\"cat,dog\", or a file with one name per line)")
    else:
        names, source = [name.strip() for name in value.split(",")], f"--labels {value!r}"
        if not all(names):
            raise ValueError(f"{source}: empty class name; give names separated by commas, e.g. \"cat,dog\"")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{source}: duplicate class names {duplicates}; each class must be named once")
    if len(names) < 2:
        raise ValueError(f"{source}: zero-shot classification needs at least 2 distinct class names, got "
                         f"{len(names)} ({names[0]!r}); a single name would always be predicted")
    return names
