"""Image preprocessing shared by inference, evaluation and training pipelines."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from paddlemix_eva.data.images import read_rgb

#: OpenAI CLIP normalisation, used by EVA-02 and EVA-CLIP alike
CLIP_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

ImageLike = Union[str, Image.Image, np.ndarray]

#: the resampling filters a config's `interpolation` may name (timm's and torchvision's names)
INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


def check_preprocessing(mean: Sequence[float], std: Sequence[float], crop_pct: float, interpolation: str) -> None:
    """Raise on values no image pipeline can use (a config typo would otherwise skew every prediction)."""
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need one value per RGB channel, got mean={list(mean)}, std={list(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r} is none of {sorted(INTERPOLATIONS)}")


@dataclass(frozen=True)
class Preprocessing:
    """A model's evaluation preprocessing, as its config declares it: resize the shorter side to
    `image_size / crop_pct` with `interpolation`, centre-crop `image_size`, normalise by `mean` / `std`."""

    image_size: int
    mean: Tuple[float, float, float] = CLIP_MEAN
    std: Tuple[float, float, float] = CLIP_STD
    crop_pct: float = 1.0
    interpolation: str = "bicubic"

    def __post_init__(self):
        check_preprocessing(self.mean, self.std, self.crop_pct, self.interpolation)

    @classmethod
    def from_config(cls, config: Any) -> "Preprocessing":
        """From a config object or a config.json dict; keys it lacks (PaddleMIX's EVA-02 configs carry none) take
        EVA-02's values (CLIP mean / std, no crop margin, bicubic)."""
        preprocessing = getattr(config, "preprocessing", None)
        if isinstance(preprocessing, Preprocessing):
            return preprocessing
        get = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key, None)
        values = {key: get(key) for key in ("image_size", "mean", "std", "crop_pct", "interpolation")}
        if values["image_size"] is None:
            raise ValueError("the model config declares no image_size: cannot preprocess images for it")
        fields = {key: value for key, value in values.items() if value is not None}
        for key in ("mean", "std"):
            if key in fields:
                fields[key] = tuple(float(v) for v in fields[key])
        return cls(**{**fields, "image_size": int(fields["image_size"])})

    def as_dict(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}

    def eval_transform(self) -> "EvalTransform":
        return EvalTransform(self.image_size, self.crop_pct, self.mean, self.std, self.interpolation)


def load_image(image: ImageLike) -> Image.Image:
    """A path, a PIL image or an HxW / HxWxC uint8 or uint16 array, as an upright 8-bit RGB PIL image
    (`images.read_rgb`: EXIF orientation applied, transparency on white, 16-bit scaled, other modes refused)."""
    return read_rgb(image)


class EvalTransform:
    """Resize the shorter side to `image_size / crop_pct`, centre-crop `image_size`, normalise to CHW."""

    def __init__(
        self,
        image_size: int,
        crop_pct: float = 1.0,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        interpolation: Union[str, int] = "bicubic",
    ):
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        if isinstance(interpolation, str) and interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {interpolation!r} is none of {sorted(INTERPOLATIONS)}")
        self.image_size = int(image_size)
        self.resize_to = int(math.floor(image_size / crop_pct))
        self.normalize = Normalize(mean, std)
        self.interpolation = INTERPOLATIONS[interpolation] if isinstance(interpolation, str) else interpolation

    def __call__(self, image: ImageLike) -> np.ndarray:
        img = load_image(image)
        w, h = img.size
        scale = self.resize_to / min(w, h)
        new_w, new_h = max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))
        img = img.resize((new_w, new_h), self.interpolation)
        left, top = (new_w - self.image_size) // 2, (new_h - self.image_size) // 2
        img = img.crop((left, top, left + self.image_size, top + self.image_size))
        return self.normalize(img)


def random_resized_crop_box(
    width: int,
    height: int,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    rng: Optional[np.random.Generator] = None,
) -> Tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop covering `scale` of the area with aspect ratio in `ratio` (log-uniform);
    10 attempts, then the largest centred crop within `ratio`. Same distribution as torchvision's."""
    uniform = rng.uniform if rng is not None else np.random.uniform
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * uniform(scale[0], scale[1])
        aspect = math.exp(uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(uniform(0, width - w + 1)) if width > w else 0
            top = int(uniform(0, height - h + 1)) if height > h else 0
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class Normalize:
    """HWC uint8 PIL image -> CHW float32 normalised by mean/std."""

    def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD):
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)

    def __call__(self, img: Image.Image) -> np.ndarray:
        chw = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (chw - self.mean) / self.std


class RandomResizedCropTransform:
    """Random-resized crop (bicubic) to `image_size`, optional horizontal flip, normalisation (CLIP training views)."""

    def __init__(
        self,
        image_size: int,
        scale: Tuple[float, float] = (0.9, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.0,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        self.image_size = int(image_size)
        self.scale, self.ratio, self.hflip = tuple(scale), tuple(ratio), float(hflip)
        self.normalize = Normalize(mean, std)

    def __call__(self, image: ImageLike, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """`rng` (e.g. seeded per sample) draws the crop and flip; without it numpy's global generator does."""
        img = load_image(image)
        left, top, w, h = random_resized_crop_box(img.width, img.height, self.scale, self.ratio, rng)
        img = img.resize((self.image_size, self.image_size), Image.BICUBIC, box=(left, top, left + w, top + h))
        if self.hflip and (rng.uniform() if rng is not None else np.random.uniform()) < self.hflip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return self.normalize(img)
