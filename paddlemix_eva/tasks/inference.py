"""One-call prediction and feature extraction: `inference_model(model_or_name, image)`, `extract_features(...)`.

A model is a zoo name, a model directory, a loaded classifier, or an exported Paddle Inference model
(`inference_backend.load_exported`). Images are paths, PIL images, HWC uint8 arrays (grayscale and RGBA are
converted to RGB), an NHWC uint8 batch array, or a list of these. Each image gets the model's own evaluation
preprocessing (resize by `crop_pct`, centre crop, bicubic, the model's mean/std).

For a list, an image that cannot be read does not stop the others: its result holds `error` (and a warning is
logged); a single unreadable image raises.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
from PIL import Image, UnidentifiedImageError

from paddlemix_eva.data.datasets import list_image_files
from paddlemix_eva.utils.logs import progress
from paddlemix_eva.utils.resources import imagenet_classnames
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD, EvalTransform, ImageLike, load_image

logger = logging.getLogger(__name__)

__all__ = ["inference_model", "extract_features", "list_image_files", "load_classifier_for_inference"]

ModelOrName = Union[str, paddle.nn.Layer, Any]
Images = Union[ImageLike, Sequence[ImageLike]]


# --------------------------------------------------------------------------------------------- models
def load_classifier_for_inference(name_or_dir: str) -> paddle.nn.Layer:
    """A classifier by zoo name or directory, in eval mode; refuses models without a trained classification
    head (MIM students, CLIP towers), whose "predictions" would be random."""
    from paddlemix_eva import zoo
    from paddlemix_eva.models import EVA02VisionTransformer
    from paddlemix_eva.zoo import saved_model_type

    if not os.path.isdir(name_or_dir):
        entry = zoo.find_entry(name_or_dir)
        if entry is not None and entry.task != "classification":
            raise ValueError(
                f"{name_or_dir} is a {entry.task} model without a classification head; predict with a fine-tuned "
                f"one, e.g. {', '.join(n for n in zoo.list_models('*ft_in1k*')[:2])}"
            )
    else:
        model_type = saved_model_type(name_or_dir)
        if model_type not in (None, EVA02VisionTransformer.config_class.model_type):
            raise ValueError(
                f"{name_or_dir} holds a {model_type!r} model, not a classifier "
                f"({EVA02VisionTransformer.config_class.model_type!r})"
            )
    model = EVA02VisionTransformer.from_pretrained(name_or_dir)
    check_classifier(model, name_or_dir)
    return model.eval()


def check_classifier(model: paddle.nn.Layer, source: Optional[str] = None) -> None:
    """Refuse a model object without a trained classification head (a MIM student, an MAE autoencoder, a CLIP
    model, a classifier built with num_classes=0): its outputs are not class scores."""
    classes = getattr(getattr(model, "config", None), "num_classes", 0) or 0
    if getattr(type(model), "is_classifier", False) and classes > 0:
        return
    what = f"{source} ({type(model).__name__})" if source else type(model).__name__
    reason = "has num_classes=0 (a feature extractor)" if getattr(type(model), "is_classifier", False) else \
        "is not an image classifier"
    raise ValueError(f"{what} {reason}: prediction, evaluation and export need a classification head; use a "
                     "fine-tuned model, or `extract_features` / `model.extract_feat` for features")


def _as_runner(model_or_name: ModelOrName) -> Tuple[Callable[[np.ndarray], np.ndarray], Any, Optional[Callable]]:
    """(logits of a normalised NCHW batch, the model's config, the pooled-feature function or None)."""
    if isinstance(model_or_name, str):
        model_or_name = load_classifier_for_inference(model_or_name)
    if isinstance(model_or_name, paddle.nn.Layer):
        model = model_or_name
        check_classifier(model)
        model.eval()

        def logits(batch: np.ndarray) -> np.ndarray:
            with paddle.no_grad():
                return model(paddle.to_tensor(batch)).numpy()

        return logits, model.config, getattr(model, "extract_feat", None)
    if callable(model_or_name) and hasattr(model_or_name, "config"):  # an exported Paddle Inference model
        return model_or_name, model_or_name.config, None
    raise TypeError(f"expected a zoo name, a model directory, a model or an exported model; got {type(model_or_name)}")


def _config_value(config: Any, key: str, default: Any) -> Any:
    value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
    return default if value is None else value


def eval_transform(config: Any) -> EvalTransform:
    """The model's own evaluation preprocessing, read from its config."""
    return EvalTransform(
        int(_config_value(config, "image_size", 224)),
        crop_pct=float(_config_value(config, "crop_pct", 1.0)),
        mean=_config_value(config, "mean", CLIP_MEAN),
        std=_config_value(config, "std", CLIP_STD),
    )


def class_names_for(config: Any, num_classes: int) -> List[str]:
    """The class names a model was fine-tuned with, ImageNet's for 1000-class heads, else the label ids."""
    names = _config_value(config, "class_names", None)
    if names is not None and len(names) == num_classes:
        return list(names)
    if num_classes == 1000:
        return imagenet_classnames()
    return [str(i) for i in range(num_classes)]


# --------------------------------------------------------------------------------------------- images
def _split_images(images: Images) -> Tuple[List[ImageLike], bool]:
    """(list of single images, whether the input was a single image)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    if isinstance(images, (list, tuple)):
        return list(images), False
    return [images], True


def _describe(image: ImageLike) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"array{list(image.shape)}"
    return type(image).__name__


def read_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image, or a ValueError / FileNotFoundError that names the file and what is wrong with it."""
    if isinstance(image, (str, os.PathLike)):
        path = str(image)
        if not os.path.exists(path):
            raise FileNotFoundError(f"image not found: {path}")
        if os.path.isdir(path):
            raise ValueError(f"{path} is a directory, not an image (`paddlemix-eva features` takes directories)")
        try:
            return load_image(path)
        except UnidentifiedImageError:
            raise ValueError(f"{path} is not an image file PIL can read") from None
        except OSError as err:
            raise ValueError(f"{path}: unreadable image ({err})") from None
    return load_image(image)


def _preprocess(
    images: Sequence[ImageLike], transform: EvalTransform, strict: bool
) -> Tuple[Optional[np.ndarray], List[Optional[str]]]:
    """(NCHW batch of the readable images or None, per-image error message or None)."""
    arrays, errors = [], []
    for image in images:
        try:
            arrays.append(transform(read_image(image)))
            errors.append(None)
        except (ValueError, OSError) as err:
            if strict:
                raise
            message, where = str(err), _describe(image)
            logger.warning("skipping %s", message if where in message else f"{where}: {message}")
            errors.append(str(err))
    return (np.stack(arrays).astype(np.float32) if arrays else None), errors


def _batches(items: Sequence[Any], batch_size: int, desc: str) -> Iterator[Sequence[Any]]:
    """Chunks of `items`, with a progress bar on a terminal when there are several."""
    starts = range(0, len(items), batch_size)
    if len(starts) > 1:
        starts = progress(starts, desc, unit="batch")
    for start in starts:
        yield items[start : start + batch_size]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------ public API
def inference_model(
    model_or_name: ModelOrName, image: Images, topk: int = 5, batch_size: int = 8
) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
    """Classify one image or a batch.

    Returns a dict (a list of dicts for a list or NHWC batch) with `pred_label`, `pred_score`, `pred_class` and
    `topk`, a list of (label, score, class name).
    """
    run, config, _ = _as_runner(model_or_name)
    transform = eval_transform(config)
    items, single = _split_images(image)
    results: List[Dict[str, Any]] = []
    names: Optional[List[str]] = None
    for chunk in _batches(items, batch_size, "predict"):
        batch, errors = _preprocess(chunk, transform, strict=single)
        probs = iter(_softmax(run(batch).astype(np.float64)) if batch is not None else [])
        for item, error in zip(chunk, errors):
            if error is not None:
                results.append({"image": _describe(item), "error": error})
                continue
            row = next(probs)
            names = names or class_names_for(config, row.shape[0])
            order = np.argsort(-row, kind="stable")[: min(topk, row.shape[0])]
            top = [(int(i), float(row[i]), names[i]) for i in order]
            results.append({"pred_label": top[0][0], "pred_score": top[0][1], "pred_class": top[0][2], "topk": top})
    return results[0] if single else results


def extract_features(
    model_or_name: ModelOrName, images: Images, patch_tokens: bool = False, batch_size: int = 8
) -> Tuple[np.ndarray, List[Optional[str]]]:
    """Pooled features [N, D] (what the head sees) or patch tokens [N, P, D] of the readable images, and one
    error message (None when fine) per input image, in input order."""
    if isinstance(model_or_name, str):
        from paddlemix_eva.models import EVA02VisionTransformer

        model_or_name = EVA02VisionTransformer.from_pretrained(model_or_name)
    if not isinstance(model_or_name, paddle.nn.Layer) or not hasattr(model_or_name, "extract_feat"):
        raise TypeError("extract_features needs a model with `extract_feat` (an EVA-02 classifier or backbone)")
    model = model_or_name.eval()
    transform = eval_transform(model.config)
    items, single = _split_images(images)
    features: List[np.ndarray] = []
    all_errors: List[Optional[str]] = []
    for chunk in _batches(items, batch_size, "features"):
        batch, errors = _preprocess(chunk, transform, strict=single)
        all_errors.extend(errors)
        if batch is not None:
            with paddle.no_grad():
                features.append(model.extract_feat(paddle.to_tensor(batch), patch_tokens=patch_tokens).numpy())
    if not features:
        raise ValueError(f"none of the {len(items)} images could be read")
    return np.concatenate(features), all_errors


