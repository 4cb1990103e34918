"""One-call prediction: `inference_model(model_or_name, image)`."""
from __future__ import annotations

from typing import Dict, List, Sequence, Union

import numpy as np
import paddle

from .resources import imagenet_classnames
from .transforms import EvalTransform, ImageLike

ModelOrName = Union[str, paddle.nn.Layer]


def _as_model(model_or_name: ModelOrName) -> paddle.nn.Layer:
    if isinstance(model_or_name, paddle.nn.Layer):
        return model_or_name
    from .models import EVA02VisionTransformer

    return EVA02VisionTransformer.from_pretrained(model_or_name)


def preprocess(model: paddle.nn.Layer, images: Sequence[ImageLike]) -> paddle.Tensor:
    """The model's eval preprocessing (resize by crop_pct, centre crop, bicubic, CLIP mean/std)."""
    config = model.config
    transform = EvalTransform(config.image_size, crop_pct=getattr(config, "crop_pct", 1.0))
    return paddle.to_tensor(np.stack([transform(img) for img in images]))


def inference_model(model_or_name: ModelOrName, image: Union[ImageLike, List[ImageLike]], topk: int = 5):
    """Classify one image (path, PIL image or HWC uint8 array) or a list of them.

    Returns a dict (a list of dicts for a list input) with `pred_label`, `pred_score`, `pred_class` and `topk`,
    a list of (label, score, class name) with class names for 1000-class ImageNet heads.
    """
    model = _as_model(model_or_name)
    single = not isinstance(image, (list, tuple))
    images = [image] if single else list(image)
    model.eval()
    with paddle.no_grad():
        probs = paddle.nn.functional.softmax(model(preprocess(model, images)), axis=-1).numpy()
    names = imagenet_classnames() if probs.shape[1] == 1000 else None
    results: List[Dict] = []
    for row in probs:
        order = np.argsort(-row)[: min(topk, row.shape[0])]
        top = [(int(i), float(row[i]), names[i] if names else str(int(i))) for i in order]
        results.append({"pred_label": top[0][0], "pred_score": top[0][1], "pred_class": top[0][2], "topk": top})
    return results[0] if single else results
