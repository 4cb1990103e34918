"""One-call prediction and feature extraction: `inference_model(model_or_name, image)`, `extract_features(...)`.

A model is a zoo name, a model directory, a loaded classifier, or an exported Paddle Inference model
(`inference_backend.load_exported`). Images are paths, PIL images, HWC uint8 / uint16 arrays, an NHWC uint8 batch
array, or a list of these, each decoded by `data.images.read_rgb` (EXIF orientation applied, transparency on white,
16 bits scaled to 8). Each image gets the model's own evaluation preprocessing (resize by `crop_pct`, centre crop,
bicubic, the model's mean/std).

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
from paddlemix_eva.data.transforms import EvalTransform, ImageLike, Preprocessing, load_image
from paddlemix_eva.utils.errors import check_at_least_one
from paddlemix_eva.utils.logs import progress
from paddlemix_eva.utils.resources import imagenet_classnames, label_set

logger = logging.getLogger(__name__)

__all__ = ["inference_model", "extract_features", "list_image_files", "load_classifier_for_inference", "load_model",
           "load_feature_extractor"]

ModelOrName = Union[str, paddle.nn.Layer, Any]
Images = Union[ImageLike, Sequence[ImageLike]]


# --------------------------------------------------------------------------------------------- models
#: how a config.json without `model_type` is read (PaddleMIX's EVA-02 classifier is the format's origin)
UNTYPED_MODEL = "eva02_vit_finetune"


def load_model(name_or_dir: str) -> paddle.nn.Layer:
    """Any zoo model or saved directory, of whichever family, with its weights, in eval mode."""
    from paddlemix_eva import zoo

    return zoo.model_class_for(name_or_dir, untyped=UNTYPED_MODEL).from_pretrained(name_or_dir).eval()


def load_feature_extractor(name_or_dir: str) -> paddle.nn.Layer:
    """A model to take image features from: classifiers, encoders and CLIP models as they are; a pre-training model
    (MIM student, MAE autoencoder) as the encoder it fine-tunes into, without a head."""
    from paddlemix_eva import zoo

    model_class = zoo.model_class_for(name_or_dir, untyped=UNTYPED_MODEL)
    if not _has_features(model_class) and getattr(model_class, "finetunes_into", None):
        encoder_class = zoo.model_class_for_type(model_class.finetunes_into)
        return encoder_class.from_pretrained(name_or_dir, num_classes=0).eval()
    return model_class.from_pretrained(name_or_dir).eval()


def _has_features(model_class: type) -> bool:
    return hasattr(model_class, "extract_feat") or hasattr(model_class, "encode_image")


def load_classifier_for_inference(name_or_dir: str) -> paddle.nn.Layer:
    """A classifier of any family by zoo name or directory, in eval mode; refuses models without a trained
    classification head (MIM students, MAE encoders, CLIP models), whose "predictions" would be random."""
    from paddlemix_eva import zoo

    entry = None if os.path.isdir(name_or_dir) else zoo.get_entry(name_or_dir)
    model_class = zoo.model_class_for(name_or_dir, untyped=UNTYPED_MODEL)
    if not getattr(model_class, "is_classifier", False) or (entry is not None and entry.task != "classification"):
        what = f"a {entry.task} model" if entry is not None else f"a {model_class.config_class.model_type!r} model"
        hint = ("; for zero-shot classification give it the class names: `paddlemix-eva predict IMG --model "
                f"{name_or_dir} --labels \"cat,dog\"` (Python: `paddlemix_eva.tasks.zeroshot`)"
                if getattr(model_class, "is_zero_shot_classifier", False) else
                f"; fine-tune it first, or predict with a fine-tuned model such as "
                f"{', '.join(zoo.list_models('*ft_in1k*')[:2])}")
        raise ValueError(f"{name_or_dir} is {what} without a classification head ({model_class.__name__}){hint}")
    model = model_class.from_pretrained(name_or_dir)
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


def eval_transform(config: Any) -> EvalTransform:
    """The model's own evaluation preprocessing, as its config (object or config.json dict) declares it."""
    return Preprocessing.from_config(config).eval_transform()


def class_names_for(config: Any, num_classes: int) -> List[str]:
    """The names the config gives the outputs; for configs that name none (PaddleMIX's), ImageNet's for
    1000-class heads, else the label ids."""
    if hasattr(config, "label_names") and config.class_names is not None:
        return config.label_names()
    names = config.get("class_names") if isinstance(config, dict) else getattr(config, "class_names", None)
    if isinstance(names, str):
        names = label_set(names)
    if names is None and isinstance(config, dict) and config.get("id2label"):
        names = [config["id2label"][key] for key in sorted(config["id2label"], key=int)]
    if names is not None:
        if len(names) != num_classes:
            raise ValueError(f"the model config names {len(names)} classes but the model has {num_classes} outputs")
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
    check_at_least_one(topk, "topk")
    check_at_least_one(batch_size, "batch_size")
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


def _feature_function(model: Any, patch_tokens: bool) -> Callable[[paddle.Tensor], paddle.Tensor]:
    """What a model's features are: a classifier's `extract_feat` (pooled or patch tokens), a CLIP model's image
    embedding (or per-patch embeddings)."""
    if hasattr(model, "extract_feat"):
        return lambda x: model.extract_feat(x, patch_tokens=patch_tokens)
    if hasattr(model, "encode_image"):
        return model.encode_image_tokens if patch_tokens else model.encode_image
    raise TypeError(f"{type(model).__name__} has no image features to extract (expected a classifier, an encoder "
                    "or a CLIP model)")


def extract_features(
    model_or_name: ModelOrName, images: Images, patch_tokens: bool = False, batch_size: int = 8
) -> Tuple[np.ndarray, List[Optional[str]]]:
    """Pooled features [N, D] (what the head sees) or patch tokens [N, P, D] of the readable images, and one
    error message (None when fine) per input image, in input order."""
    check_at_least_one(batch_size, "batch_size")
    model = load_feature_extractor(model_or_name) if isinstance(model_or_name, str) else model_or_name
    encode = _feature_function(model, patch_tokens)
    model.eval()
    transform = eval_transform(model.config)
    items, single = _split_images(images)
    features: List[np.ndarray] = []
    all_errors: List[Optional[str]] = []
    for chunk in _batches(items, batch_size, "features"):
        batch, errors = _preprocess(chunk, transform, strict=single)
        all_errors.extend(errors)
        if batch is not None:
            with paddle.no_grad():
                features.append(encode(paddle.to_tensor(batch)).numpy())
    if not features:
        raise ValueError(f"none of the {len(items)} images could be read")
    return np.concatenate(features), all_errors


