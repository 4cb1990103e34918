"""Image preprocessing shared by inference, evaluation and training pipelines."""
from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import numpy as np
from PIL import Image

#: OpenAI CLIP normalisation, used by EVA-02 and EVA-CLIP alike
CLIP_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

ImageLike = Union[str, Image.Image, np.ndarray]


def load_image(image: ImageLike) -> Image.Image:
    """A path, a PIL image or an HWC uint8 array, as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"expected an HxWx3 (or HxWx4 / HxW) image array, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image array with values 0..255, got dtype {image.dtype}")
        return Image.fromarray(image).convert("RGB")
    with Image.open(image) as img:
        return img.convert("RGB")


class EvalTransform:
    """Resize the shorter side to `image_size / crop_pct` (bicubic), centre-crop `image_size`, normalise to CHW."""

    def __init__(
        self,
        image_size: int,
        crop_pct: float = 1.0,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        interpolation: int = Image.BICUBIC,
    ):
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.image_size = int(image_size)
        self.resize_to = int(math.floor(image_size / crop_pct))
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.interpolation = interpolation

    def __call__(self, image: ImageLike) -> np.ndarray:
        img = load_image(image)
        w, h = img.size
        scale = self.resize_to / min(w, h)
        new_w, new_h = max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))
        img = img.resize((new_w, new_h), self.interpolation)
        left, top = (new_w - self.image_size) // 2, (new_h - self.image_size) // 2
        img = img.crop((left, top, left + self.image_size, top + self.image_size))
        chw = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (chw - self.mean) / self.std
