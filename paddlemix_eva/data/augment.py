"""EVA-02 fine-tuning augmentation: RandAugment, random erasing, mixup/cutmix and the train/eval pipelines.

The recipe follows timm's ``create_transform(is_training=True)`` + ``Mixup`` + ``RandomErasing`` (which EVA-02's
fine-tuning scripts use) so that hyper-parameters carry over unchanged, but it runs on PIL images and numpy arrays
and draws every random number from an explicit source:

* a ``np.random.Generator`` (or an ``int`` seed) makes a call reproducible. Training passes one per sample, seeded
  by (seed, epoch, index) (``datasets.SeededImageFolder``), and one per batch to ``Mixup`` (``datasets.batch_rng``),
  so a run's augmentation depends on neither the number of processes or DataLoader workers nor an interruption:
  a resumed run draws exactly what an uninterrupted one would;
* ``rng=None`` uses numpy's global RNG (Paddle's DataLoader seeds it per worker, from the main process's state
  when the epoch's iterator starts, which a resumed run cannot reproduce): for interactive use only.

timm draws from python's ``random`` and torch as well; we use numpy only, so results are equal in distribution
to timm's, not bit-equal. The one exception is ``Mixup`` with ``rng=None``: it consumes numpy's global RNG in the
same order as timm's ``Mixup`` does, so seeded runs of the two agree exactly (handy for parity checks).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from paddlemix_eva.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    EvalTransform,
    ImageLike,
    Normalize,
    load_image,
    random_resized_crop_box,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RngLike", "RANDAUG_OPS", "INCREASING_OPS", "apply_op", "RandAugment", "RandomErasing", "mixup_target",
    "Mixup", "ColorJitter", "RandomResizedCrop", "RandomHorizontalFlip", "TrainTransform",
    "build_train_transform", "build_eval_transform", "resolve_interpolation",
]

#: anything accepted as a source of randomness: None (numpy global RNG), an int seed or a Generator
RngLike = Union[None, int, np.random.Generator]

_Resampling = getattr(Image, "Resampling", Image)
BILINEAR: int = _Resampling.BILINEAR
BICUBIC: int = _Resampling.BICUBIC
_AFFINE = getattr(Image, "Transform", Image).AFFINE

#: magnitude that maps to the strongest op argument (timm's "_LEVEL_DENOM"); policies are written on this scale
MAX_LEVEL = 10.0
_DEFAULT_FILL: Tuple[int, int, int] = (128, 128, 128)

_INTERPOLATIONS: Dict[str, Union[int, Tuple[int, ...]]] = {
    "nearest": _Resampling.NEAREST,
    "bilinear": BILINEAR,
    "bicubic": BICUBIC,
    "lanczos": _Resampling.LANCZOS,
    "random": (BILINEAR, BICUBIC),
}


def resolve_interpolation(name: Union[str, int, Sequence[int]]) -> Union[int, Tuple[int, ...]]:
    """A PIL resampling filter (or a tuple to pick from at random) from a timm-style name such as 'bicubic'."""
    if isinstance(name, str):
        try:
            return _INTERPOLATIONS[name.lower()]
        except KeyError:
            raise ValueError(f"unknown interpolation {name!r}; expected one of {sorted(_INTERPOLATIONS)}") from None
    if isinstance(name, (tuple, list)):
        return tuple(int(v) for v in name)
    return int(name)


# --------------------------------------------------------------------------------------------------------------
# randomness
# --------------------------------------------------------------------------------------------------------------


class _Draw:
    """One interface over a ``np.random.Generator`` and numpy's global (legacy) RNG.

    The two APIs differ only in the name of the integer sampler; everything else is called identically, which keeps
    every augmentation written once while ``rng=None`` still means "the global RNG the DataLoader seeded"."""

    __slots__ = ("generator", "_src")

    def __init__(self, rng: Union[RngLike, "_Draw"]):
        if isinstance(rng, np.random.Generator):
            self.generator: Optional[np.random.Generator] = rng
        elif rng is None:
            self.generator = None
        elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            self.generator = np.random.default_rng(int(rng))
        else:
            raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {type(rng).__name__}")
        self._src: Any = self.generator if self.generator is not None else np.random

    def random(self, size: Optional[int] = None) -> Any:
        return self._src.random(size)

    def uniform(self, low: float, high: float) -> float:
        return float(self._src.uniform(low, high))

    def normal(self, loc: float, scale: float) -> float:
        return float(self._src.normal(loc, scale))

    def beta(self, a: float, b: float, size: Optional[int] = None) -> Any:
        return self._src.beta(a, b, size)

    def integers(self, low: int, high: int) -> int:
        """Uniform integer in [low, high)."""
        if self.generator is not None:
            return int(self.generator.integers(low, high))
        return int(np.random.randint(low, high))

    def standard_normal(self, shape: Tuple[int, ...]) -> np.ndarray:
        return np.asarray(self._src.standard_normal(shape), dtype=np.float32)

    def choice(self, n: int, size: int) -> np.ndarray:
        return np.asarray(self._src.choice(n, size, replace=True))

    def permutation(self, n: int) -> np.ndarray:
        return np.asarray(self._src.permutation(n))

    def pick(self, options: Union[int, Sequence[int]]) -> int:
        """A resampling filter: fixed, or drawn uniformly from a tuple (timm's 'random' interpolation)."""
        if isinstance(options, (tuple, list)):
            return int(options[self.integers(0, len(options))])
        return int(options)


def _as_draw(rng: Union[RngLike, _Draw]) -> _Draw:
    return rng if isinstance(rng, _Draw) else _Draw(rng)


# --------------------------------------------------------------------------------------------------------------
# RandAugment
# --------------------------------------------------------------------------------------------------------------


def _affine(img: Image.Image, matrix: Tuple[float, ...], fill: Tuple[int, ...], resample: int) -> Image.Image:
    return img.transform(img.size, _AFFINE, matrix, resample=resample, fillcolor=fill)


def _posterize(img: Image.Image, bits: int) -> Image.Image:
    """Keep the top ``bits`` bits. Our own lookup table because recent Pillow refuses bits=0, which timm's
    PosterizeIncreasing asks for at magnitude 10 (meaning: all black); clamped for magnitudes above 10."""
    bits = int(min(8, max(0, bits)))
    if bits == 8:
        return img
    mask = (0xFF << (8 - bits)) & 0xFF
    return img.point([v & mask for v in range(256)] * len(img.getbands()))


def _solarize_add(img: Image.Image, add: int, threshold: int = 128) -> Image.Image:
    """Brighten the dark pixels only (a lookup table shared by the three channels)."""
    table = [min(255, v + add) if v < threshold else v for v in range(256)]
    return img.point(table * len(img.getbands()))


_ENHANCERS = {
    "Color": ImageEnhance.Color,
    "Contrast": ImageEnhance.Contrast,
    "Brightness": ImageEnhance.Brightness,
    "Sharpness": ImageEnhance.Sharpness,
}

#: every op name understood by ``apply_op`` (timm's RandAugment vocabulary)
RANDAUG_OPS: Tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "PosterizeIncreasing", "Solarize",
    "SolarizeIncreasing", "SolarizeAdd", "Color", "ColorIncreasing", "Contrast", "ContrastIncreasing", "Brightness",
    "BrightnessIncreasing", "Sharpness", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateX", "TranslateY",
    "TranslateXRel", "TranslateYRel",
)
#: the 'inc1' op set: a larger magnitude always means a stronger distortion
INCREASING_OPS: Tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)
#: timm's default ('inc0') set, where Posterize/Solarize get *weaker* and the enhancers run 0.1..1.9 with magnitude
DEFAULT_OPS: Tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
#: ops whose argument gets a random sign, and ops that resample (these draw bilinear/bicubic when it is random)
_SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel",
                     "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"})
_GEOMETRIC = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel"})


def apply_op(
    img: Image.Image,
    name: str,
    magnitude: float,
    *,
    negate: bool = False,
    fill: Tuple[int, ...] = _DEFAULT_FILL,
    resample: int = BICUBIC,
    translate_pct: float = 0.45,
    translate_const: float = 100.0,
) -> Image.Image:
    """Apply one RandAugment op with every random choice made by the caller (sign, resampling), so each op can be
    checked on its own. ``magnitude`` is on the 0..10 policy scale; 10 gives Rotate +-30 deg, Shear +-0.3,
    TranslateRel +-``translate_pct`` of the size, enhance factors 0.1/1.9, and so on."""
    level = magnitude / MAX_LEVEL
    sign = -1.0 if negate else 1.0
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(sign * 30.0 * level, resample=resample, fillcolor=fill)
    if name == "ShearX":
        return _affine(img, (1, sign * 0.3 * level, 0, 0, 1, 0), fill, resample)
    if name == "ShearY":
        return _affine(img, (1, 0, 0, sign * 0.3 * level, 1, 0), fill, resample)
    # translations: fraction first, then pixels (the same float rounding as timm, so outputs match exactly)
    if name == "TranslateXRel":
        return _affine(img, (1, 0, sign * level * translate_pct * img.width, 0, 1, 0), fill, resample)
    if name == "TranslateYRel":
        return _affine(img, (1, 0, 0, 0, 1, sign * level * translate_pct * img.height), fill, resample)
    if name == "TranslateX":
        return _affine(img, (1, 0, sign * level * translate_const, 0, 1, 0), fill, resample)
    if name == "TranslateY":
        return _affine(img, (1, 0, 0, 0, 1, sign * level * translate_const), fill, resample)
    if name == "Posterize":  # keep 0..4 bits: stronger at *low* magnitude (TF EfficientNet convention)
        return _posterize(img, int(4 * level))
    if name == "PosterizeIncreasing":  # keep 4..0 bits
        return _posterize(img, 4 - int(4 * level))
    if name == "Solarize":  # invert pixels above 0..256: stronger at low magnitude
        return ImageOps.solarize(img, min(256, int(256 * level)))
    if name == "SolarizeIncreasing":
        return ImageOps.solarize(img, 256 - min(256, int(256 * level)))
    if name == "SolarizeAdd":
        return _solarize_add(img, min(128, int(110 * level)))
    base = name[: -len("Increasing")] if name.endswith("Increasing") else name
    if base in _ENHANCERS:
        if name.endswith("Increasing"):  # 1.0 is the identity; move away from it, floor at 0.1
            factor = max(0.1, 1.0 + sign * 0.9 * level)
        else:
            factor = 0.1 + 1.8 * level
        return _ENHANCERS[base](img).enhance(factor)
    raise ValueError(f"unknown RandAugment op {name!r}")


class RandAugment:
    """RandAugment with timm's conventions: per image, ``num_ops`` ops drawn with replacement, each applied with
    probability ``prob`` at ``magnitude`` (plus gaussian noise of ``magnitude_std``; uniform in [0, magnitude] if
    it is infinite), clipped to [0, ``magnitude_max`` or 10]. Geometric ops fill with the dataset mean colour."""

    def __init__(
        self,
        ops: Sequence[str] = INCREASING_OPS,
        num_ops: int = 2,
        magnitude: float = 10.0,
        magnitude_std: float = 0.0,
        magnitude_max: Optional[float] = None,
        prob: float = 0.5,
        fill: Sequence[int] = _DEFAULT_FILL,
        interpolation: Union[str, int, Sequence[int]] = "random",
        translate_pct: float = 0.45,
        translate_const: float = 100.0,
    ):
        unknown = [op for op in ops if op not in RANDAUG_OPS]
        if unknown:
            raise ValueError(f"unknown RandAugment op(s) {unknown}; known: {list(RANDAUG_OPS)}")
        if num_ops < 0 or not 0.0 <= prob <= 1.0 or magnitude_std < 0:
            raise ValueError(f"need num_ops >= 0, 0 <= prob <= 1, magnitude_std >= 0; got {num_ops}, {prob}, "
                             f"{magnitude_std}")
        self.ops: Tuple[str, ...] = tuple(ops)
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.magnitude_max = None if magnitude_max is None else float(magnitude_max)
        self.prob = float(prob)
        self.fill: Tuple[int, ...] = tuple(int(v) for v in fill)
        self.resample = resolve_interpolation(interpolation)
        self.translate_pct = float(translate_pct)
        self.translate_const = float(translate_const)

    @property
    def increasing(self) -> bool:
        return self.ops == INCREASING_OPS

    @classmethod
    def from_policy(
        cls,
        policy: str,
        img_size: int,
        mean: Sequence[float] = CLIP_MEAN,
        interpolation: Union[str, int, Sequence[int]] = "random",
    ) -> "RandAugment":
        """Parse a timm policy string, e.g. ``rand-m9-mstd0.5-inc1``: dash-separated ``m`` magnitude (default 10),
        ``n`` ops per image (2), ``p`` per-op probability (0.5), ``mstd`` magnitude noise (> 100 means uniform),
        ``mmax`` magnitude ceiling, ``inc`` 0/1 op set. Fill colour and absolute translation come from the image
        size and ``mean`` exactly as timm derives its ``hparams``."""
        tokens = policy.split("-")
        if tokens[0] != "rand":
            raise ValueError(f"only RandAugment policies ('rand-...') are supported, got {policy!r}")
        kwargs: Dict[str, Any] = {}
        increasing = False
        for token in tokens[1:]:
            match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d*)?)", token)
            if match is None:
                raise ValueError(f"unknown RandAugment policy token {token!r} in {policy!r}")
            key, value = match.groups()
            if key == "mstd":
                std = float(value)
                kwargs["magnitude_std"] = math.inf if std > 100 else std
            elif key == "mmax":
                kwargs["magnitude_max"] = float(value)
            elif key == "inc":
                if value not in ("0", "1"):
                    raise ValueError(f"policy token {token!r}: 'inc' takes 0 or 1")
                increasing = value == "1"
            elif key == "m":
                kwargs["magnitude"] = float(value)
            elif key == "n":
                if not value.isdigit():
                    raise ValueError(f"policy token {token!r}: 'n' takes an integer")
                kwargs["num_ops"] = int(value)
            else:
                kwargs["prob"] = float(value)
        augment = cls(
            ops=INCREASING_OPS if increasing else DEFAULT_OPS,
            fill=tuple(min(255, round(255 * m)) for m in mean),
            translate_const=int(img_size * 0.45),
            interpolation=interpolation,
            **kwargs,
        )
        logger.debug("RandAugment from %r: %r", policy, augment)
        return augment

    def _magnitude(self, draw: _Draw) -> float:
        magnitude = self.magnitude
        if self.magnitude_std == math.inf:
            magnitude = draw.uniform(0.0, magnitude)
        elif self.magnitude_std > 0:
            magnitude = draw.normal(magnitude, self.magnitude_std)
        return min(max(0.0, magnitude), self.magnitude_max or MAX_LEVEL)

    def apply_random_op(self, img: Image.Image, name: str, rng: Union[RngLike, _Draw] = None) -> Image.Image:
        """One op as RandAugment applies it: skipped with probability 1 - ``prob``, noisy magnitude, random sign
        and (for geometric ops) resampling filter."""
        draw = _as_draw(rng)
        if draw.random() >= self.prob:
            return img
        magnitude = self._magnitude(draw)
        negate = bool(draw.random() < 0.5) if name in _SIGNED else False
        resample = draw.pick(self.resample) if name in _GEOMETRIC else BICUBIC
        return apply_op(img, name, magnitude, negate=negate, fill=self.fill, resample=resample,
                        translate_pct=self.translate_pct, translate_const=self.translate_const)

    def __call__(self, img: Image.Image, rng: Union[RngLike, _Draw] = None) -> Image.Image:
        if img.mode != "RGB":
            raise ValueError(f"RandAugment expects an RGB image, got mode {img.mode!r}")
        draw = _as_draw(rng)
        if not self.ops or self.num_ops == 0:
            return img
        for index in draw.choice(len(self.ops), self.num_ops):
            img = self.apply_random_op(img, self.ops[int(index)], draw)
        return img

    def __repr__(self) -> str:
        return (f"RandAugment(n={self.num_ops}, m={self.magnitude}, mstd={self.magnitude_std}, "
                f"mmax={self.magnitude_max}, p={self.prob}, increasing={self.increasing}, fill={self.fill})")


# --------------------------------------------------------------------------------------------------------------
# random erasing
# --------------------------------------------------------------------------------------------------------------


class RandomErasing:
    """Random erasing (Zhong et al.) on a *normalised* CHW (or BCHW, per image) float array, as timm applies it
    after normalisation: noise fills are then on the scale of the data. Returns a new array.

    ``mode``: 'pixel' per-pixel N(0, 1), 'rand' one N(0, 1) colour per channel, 'const' zeros. With probability
    ``probability`` an image gets k rectangles, k uniform in [``min_count``, ``count``] (timm's ``max_count``;
    ``min_count`` defaults to 1 as in timm, so count=3 means 1..3, not always 3). Each rectangle covers an area
    fraction ~U(min_area, max_area) / k with log-uniform aspect (h/w) in [min_aspect, max_aspect or 1/min_aspect];
    up to 10 attempts to fit it strictly inside the image, then it is dropped."""

    def __init__(
        self,
        probability: float = 0.5,
        mode: str = "pixel",
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_aspect: Optional[float] = None,
        count: int = 1,
        min_count: int = 1,
    ):
        mode = (mode or "const").lower()
        if mode not in ("pixel", "rand", "const"):
            raise ValueError(f"random erasing mode must be 'pixel', 'rand' or 'const', got {mode!r}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if not 0.0 < min_area <= max_area <= 1.0:
            raise ValueError(f"need 0 < min_area <= max_area <= 1, got {min_area}, {max_area}")
        if not 1 <= min_count <= count:
            raise ValueError(f"need 1 <= min_count <= count, got {min_count}, {count}")
        max_aspect = max_aspect or 1.0 / min_aspect
        self.probability = float(probability)
        self.mode = mode
        self.min_area, self.max_area = float(min_area), float(max_area)
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect))
        self.min_count, self.count = int(min_count), int(count)

    def _fill(self, draw: _Draw, shape: Tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
        if self.mode == "pixel":
            return draw.standard_normal(shape).astype(dtype)
        if self.mode == "rand":
            return draw.standard_normal((shape[0], 1, 1)).astype(dtype)
        return np.zeros((shape[0], 1, 1), dtype)

    def _erase(self, img: np.ndarray, draw: _Draw) -> None:
        if draw.random() >= self.probability:
            return
        channels, height, width = img.shape
        boxes = self.min_count if self.min_count == self.count else draw.integers(self.min_count, self.count + 1)
        for _ in range(boxes):
            for _attempt in range(10):
                area = draw.uniform(self.min_area, self.max_area) * height * width / boxes
                aspect = math.exp(draw.uniform(*self.log_aspect))
                h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if 0 < h < height and 0 < w < width:
                    top, left = draw.integers(0, height - h + 1), draw.integers(0, width - w + 1)
                    img[:, top:top + h, left:left + w] = self._fill(draw, (channels, h, w), img.dtype)
                    break

    def __call__(self, x: np.ndarray, rng: Union[RngLike, _Draw] = None) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim not in (3, 4):
            raise ValueError(f"expected a CHW or BCHW numpy array, got {type(x).__name__} "
                             f"{getattr(x, 'shape', '')}")
        draw = _as_draw(rng)
        out = np.array(x, copy=True)
        for img in (out[None] if out.ndim == 3 else out):
            self._erase(img, draw)
        return out

    def __repr__(self) -> str:
        return (f"RandomErasing(p={self.probability}, mode={self.mode}, area=({self.min_area:.3g}, "
                f"{self.max_area:.3g}), count=({self.min_count}, {self.count}))")


# --------------------------------------------------------------------------------------------------------------
# mixup / cutmix
# --------------------------------------------------------------------------------------------------------------


def mixup_target(labels: np.ndarray, num_classes: int, lam: Union[float, np.ndarray] = 1.0,
                 smoothing: float = 0.0) -> np.ndarray:
    """Soft targets ``lam * onehot(y) + (1 - lam) * onehot(y[::-1])`` with label smoothing (off value
    ``smoothing / num_classes``, on value ``1 - smoothing + off``). ``lam`` is a scalar or one value per sample."""
    labels = np.asarray(labels).reshape(-1)
    off = smoothing / num_classes
    onehot = np.full((labels.shape[0], num_classes), off, dtype=np.float32)
    onehot[np.arange(labels.shape[0]), labels] = 1.0 - smoothing + off
    if np.ndim(lam) == 0:
        own, other = np.float32(lam), np.float32(1.0 - float(lam))
    else:
        own = np.asarray(lam, dtype=np.float32).reshape(-1, 1)
        other = np.float32(1.0) - own
    return (onehot * own + onehot[::-1] * other).astype(np.float32)


class Mixup:
    """Mixup / CutMix on a numpy batch, each sample mixed with its mirror in the batch (index B-1-i) like timm.

    ``mode``: 'batch' one lambda and one box for the whole batch, 'pair' per mirrored pair, 'elem' per sample.
    With probability ``prob`` mixing happens (else only smoothed one-hot targets); when both alphas are > 0,
    cutmix is chosen with ``switch_prob``. CutMix lambda is corrected to the pasted area (``correct_lam``).
    ``cutmix_minmax`` draws the box side fractions uniformly from that range instead (cutmix-only, as timm).

    Odd batch sizes (timm refuses them) are accepted: the middle sample is its own mirror, which leaves its image
    and target unchanged in every mode (in 'pair' mode it gets lambda 1)."""

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        cutmix_minmax: Optional[Sequence[float]] = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        correct_lam: bool = True,
    ):
        if mode not in ("batch", "pair", "elem"):
            raise ValueError(f"mixup mode must be 'batch', 'pair' or 'elem', got {mode!r}")
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0.0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1.0:
                raise ValueError(f"cutmix_minmax must be (min, max) with 0 <= min < max <= 1, got {cutmix_minmax}")
            cutmix_alpha = 1.0  # timm: the minmax box replaces the beta draw, so cutmix is simply "on"
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("Mixup needs mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax; for label smoothing "
                             "alone use mixup_target(labels, num_classes, 1.0, smoothing)")
        if num_classes < 1 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"need num_classes >= 1 and 0 <= label_smoothing < 1, got {num_classes}, "
                             f"{label_smoothing}")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.cutmix_minmax = None if cutmix_minmax is None else (float(cutmix_minmax[0]), float(cutmix_minmax[1]))
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.mode = mode
        self.label_smoothing = float(label_smoothing)
        self.num_classes = int(num_classes)
        self.correct_lam = bool(correct_lam)
        #: the training loop may switch mixing off for the last epochs (timm's mixup_off_epoch); smoothing stays
        self.mixup_enabled = True

    # The draw order below equals timm's so that rng=None reproduces timm's Mixup under np.random.seed.
    def _batch_params(self, draw: _Draw) -> Tuple[float, bool]:
        if not (self.mixup_enabled and draw.random() < self.prob):
            return 1.0, False
        use_cutmix = self.cutmix_alpha > 0
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(draw.random() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(draw.beta(alpha, alpha)), use_cutmix

    def _elem_params(self, draw: _Draw, n: int) -> Tuple[np.ndarray, np.ndarray]:
        lam = np.ones(n, np.float32)
        use_cutmix = np.zeros(n, bool)
        if not self.mixup_enabled or n == 0:
            return lam, use_cutmix
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = np.asarray(draw.random(n)) < self.switch_prob
            from_cutmix = draw.beta(self.cutmix_alpha, self.cutmix_alpha, n)
            from_mixup = draw.beta(self.mixup_alpha, self.mixup_alpha, n)
            lam_mix = np.where(use_cutmix, from_cutmix, from_mixup)
        elif self.mixup_alpha > 0:
            lam_mix = draw.beta(self.mixup_alpha, self.mixup_alpha, n)
        else:
            use_cutmix = np.ones(n, bool)
            lam_mix = draw.beta(self.cutmix_alpha, self.cutmix_alpha, n)
        lam = np.where(np.asarray(draw.random(n)) < self.prob, lam_mix.astype(np.float32), lam)
        return lam.astype(np.float32), use_cutmix

    def _box(self, height: int, width: int, lam: float, draw: _Draw) -> Tuple[Tuple[int, int, int, int], float]:
        """(top, bottom, left, right) of the pasted box and the lambda matching it."""
        if self.cutmix_minmax is not None:
            lo, hi = self.cutmix_minmax
            cut_h = draw.integers(int(height * lo), int(height * hi))
            cut_w = draw.integers(int(width * lo), int(width * hi))
            top, left = draw.integers(0, height - cut_h + 1), draw.integers(0, width - cut_w + 1)
            box = (top, top + cut_h, left, left + cut_w)
        else:  # a box of area (1 - lam) centred anywhere in the image, clipped at the borders
            side = math.sqrt(1.0 - lam)
            cut_h, cut_w = int(height * side), int(width * side)
            cy, cx = draw.integers(0, height), draw.integers(0, width)
            box = (max(0, cy - cut_h // 2), min(height, cy + (cut_h + 1) // 2),
                   max(0, cx - cut_w // 2), min(width, cx + (cut_w + 1) // 2))
        if self.correct_lam or self.cutmix_minmax is not None:
            lam = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(height * width)
        return box, lam

    def _mix_batch(self, x: np.ndarray, draw: _Draw) -> float:
        lam, use_cutmix = self._batch_params(draw)
        if lam == 1.0:
            return 1.0
        if use_cutmix:
            (y0, y1, x0, x1), lam = self._box(x.shape[2], x.shape[3], lam, draw)
            x[:, :, y0:y1, x0:x1] = x[::-1, :, y0:y1, x0:x1].copy()
        else:
            x[:] = x * np.float32(lam) + x[::-1] * np.float32(1.0 - lam)
        return lam

    def _mix_elem(self, x: np.ndarray, draw: _Draw, pairs: bool) -> np.ndarray:
        batch = x.shape[0]
        n = batch // 2 if pairs else batch
        lam, use_cutmix = self._elem_params(draw, n)
        source = x.copy()
        for i in range(n):
            j = batch - 1 - i
            if lam[i] == 1.0:
                continue
            if use_cutmix[i]:
                (y0, y1, x0, x1), lam[i] = self._box(x.shape[2], x.shape[3], float(lam[i]), draw)
                x[i, :, y0:y1, x0:x1] = source[j, :, y0:y1, x0:x1]
                if pairs:
                    x[j, :, y0:y1, x0:x1] = source[i, :, y0:y1, x0:x1]
            else:
                x[i] = source[i] * lam[i] + source[j] * (1.0 - lam[i])
                if pairs:
                    x[j] = source[j] * lam[i] + source[i] * (1.0 - lam[i])
        if pairs:
            middle = np.ones(batch % 2, np.float32)
            lam = np.concatenate([lam, middle, lam[::-1]])
        return lam

    def __call__(self, images: np.ndarray, labels: np.ndarray,
                 rng: RngLike = None) -> Tuple[np.ndarray, np.ndarray]:
        """(images [B, C, H, W], int labels [B]) -> (mixed float32 images, soft targets [B, num_classes] float32).
        The input array is not modified."""
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"expected images of shape [B, C, H, W], got {images.shape}")
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"expected integer labels of shape ({images.shape[0]},), got {labels.dtype} "
                             f"{labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        draw = _as_draw(rng)
        x = images.astype(np.float32, copy=True)
        if self.mode == "batch":
            lam: Union[float, np.ndarray] = self._mix_batch(x, draw)
        else:
            lam = self._mix_elem(x, draw, pairs=self.mode == "pair")
        return x, mixup_target(labels, self.num_classes, lam, self.label_smoothing)

    def __repr__(self) -> str:
        return (f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
                f"cutmix_minmax={self.cutmix_minmax}, prob={self.prob}, switch_prob={self.switch_prob}, "
                f"mode={self.mode!r}, label_smoothing={self.label_smoothing}, num_classes={self.num_classes})")


# --------------------------------------------------------------------------------------------------------------
# pipeline stages
# --------------------------------------------------------------------------------------------------------------


def _factor_range(value: Union[float, Sequence[float]], name: str, centre: float = 1.0,
                  bound: Tuple[float, float] = (0.0, math.inf)) -> Optional[Tuple[float, float]]:
    if isinstance(value, (tuple, list)):
        lo, hi = float(value[0]), float(value[1])
    else:
        if value < 0:
            raise ValueError(f"colour jitter {name} must be >= 0, got {value}")
        lo, hi = centre - float(value), centre + float(value)
    lo, hi = max(bound[0], lo), min(bound[1], hi)
    if lo > hi:
        raise ValueError(f"colour jitter {name}: empty range ({lo}, {hi})")
    return None if lo == hi == centre else (lo, hi)


def _shift_hue(img: Image.Image, shift: float) -> Image.Image:
    hsv = np.array(img.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(round(shift * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


class ColorJitter:
    """Brightness, contrast and saturation factors each ~U(max(0, 1 - j), 1 + j) (optionally hue ~U(-h, h)),
    applied in a random order, the semantics of torchvision's ColorJitter that timm uses."""

    def __init__(self, brightness: Union[float, Sequence[float]] = 0.0,
                 contrast: Union[float, Sequence[float]] = 0.0,
                 saturation: Union[float, Sequence[float]] = 0.0,
                 hue: Union[float, Sequence[float]] = 0.0):
        self.ranges: Tuple[Optional[Tuple[float, float]], ...] = (
            _factor_range(brightness, "brightness"),
            _factor_range(contrast, "contrast"),
            _factor_range(saturation, "saturation"),
            _factor_range(hue, "hue", centre=0.0, bound=(-0.5, 0.5)),
        )

    @property
    def is_identity(self) -> bool:
        return all(r is None for r in self.ranges)

    def __call__(self, img: Image.Image, rng: Union[RngLike, _Draw] = None) -> Image.Image:
        draw = _as_draw(rng)
        order = draw.permutation(4)
        factors = [None if r is None else draw.uniform(*r) for r in self.ranges]
        for index in order:
            factor = factors[int(index)]
            if factor is None:
                continue
            if index == 0:
                img = ImageEnhance.Brightness(img).enhance(factor)
            elif index == 1:
                img = ImageEnhance.Contrast(img).enhance(factor)
            elif index == 2:
                img = ImageEnhance.Color(img).enhance(factor)
            else:
                img = _shift_hue(img, factor)
        return img

    def __repr__(self) -> str:
        return f"ColorJitter(brightness={self.ranges[0]}, contrast={self.ranges[1]}, saturation={self.ranges[2]}, " \
               f"hue={self.ranges[3]})"


class RandomResizedCrop:
    """Random crop of ``scale`` of the area and log-uniform aspect in ``ratio``, resized to ``size`` x ``size``;
    interpolation 'random' picks bilinear or bicubic per image like timm."""

    def __init__(self, size: int, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), interpolation: Union[str, int] = "bicubic"):
        self.size = int(size)
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))
        self.interpolation = resolve_interpolation(interpolation)

    def __call__(self, img: Image.Image, rng: Union[RngLike, _Draw] = None) -> Image.Image:
        draw = _as_draw(rng)
        left, top, w, h = random_resized_crop_box(img.width, img.height, self.scale, self.ratio, draw.generator)
        resample = draw.pick(self.interpolation)
        return img.resize((self.size, self.size), resample, box=(left, top, left + w, top + h))

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, img: Image.Image, rng: Union[RngLike, _Draw] = None) -> Image.Image:
        if _as_draw(rng).random() < self.p:
            return img.transpose(getattr(Image, "Transpose", Image).FLIP_LEFT_RIGHT)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class _Normalise:
    """``transforms.Normalize`` as a pipeline stage (it needs no randomness)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.normalize = Normalize(mean, std)

    def __call__(self, img: Image.Image, rng: Union[RngLike, _Draw] = None) -> np.ndarray:
        return self.normalize(img)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.normalize.mean.ravel().tolist()}, std={self.normalize.std.ravel().tolist()})"


Stage = Callable[..., Any]


class TrainTransform:
    """The training pipeline: named stages, each called as ``stage(x, draw)`` on one shared random source, so a
    single ``rng`` makes the whole sample reproducible. Image (path / PIL / HWC uint8) -> CHW float32."""

    def __init__(self, stages: Sequence[Tuple[str, Stage]]):
        self.stages: Tuple[Tuple[str, Stage], ...] = tuple(stages)

    @property
    def stage_names(self) -> List[str]:
        return [name for name, _ in self.stages]

    def stage(self, name: str) -> Optional[Stage]:
        """The stage called ``name``, or None when the pipeline does not have it."""
        return next((fn for stage_name, fn in self.stages if stage_name == name), None)

    def __call__(self, image: ImageLike, rng: RngLike = None) -> np.ndarray:
        draw = _as_draw(rng)
        out: Any = load_image(image)
        for _, fn in self.stages:
            out = fn(out, draw)
        return out

    def __repr__(self) -> str:
        inner = "".join(f"\n  {name}: {fn!r}" for name, fn in self.stages)
        return f"TrainTransform({inner}\n)"


def build_train_transform(
    input_size: int,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1",
    color_jitter: Union[None, float, Sequence[float]] = 0.4,
    reprob: float = 0.0,
    remode: str = "pixel",
    recount: int = 1,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    interpolation: str = "bicubic",
) -> TrainTransform:
    """timm's ``transforms_imagenet_train`` for EVA-02 fine-tuning: random-resized crop, flip, RandAugment *or*
    colour jitter (jitter is dropped whenever a RandAugment policy is given, as in timm), normalise, random erasing.
    A fixed ``interpolation`` is also used by RandAugment's geometric ops; 'random' picks bilinear/bicubic there."""
    stages: List[Tuple[str, Stage]] = [("random_resized_crop", RandomResizedCrop(input_size, scale, ratio,
                                                                                 interpolation))]
    if hflip > 0:
        stages.append(("hflip", RandomHorizontalFlip(hflip)))
    if auto_augment:
        stages.append(("rand_augment", RandAugment.from_policy(auto_augment, input_size, mean, interpolation)))
        if color_jitter:
            logger.info("colour jitter %s is not used: RandAugment %r replaces it (timm semantics)", color_jitter,
                        auto_augment)
    elif color_jitter is not None:
        if isinstance(color_jitter, (int, float)):
            jitter = ColorJitter(color_jitter, color_jitter, color_jitter)
        elif len(color_jitter) in (3, 4):
            jitter = ColorJitter(*color_jitter)
        else:
            raise ValueError(f"color_jitter must be a number or 3/4 values, got {color_jitter!r}")
        if not jitter.is_identity:
            stages.append(("color_jitter", jitter))
    stages.append(("normalize", _Normalise(mean, std)))
    if reprob > 0:
        stages.append(("random_erasing", RandomErasing(reprob, mode=remode, count=recount)))
    transform = TrainTransform(stages)
    logger.debug("train transform: %r", transform)
    return transform


def build_eval_transform(
    input_size: int,
    crop_pct: float = 1.0,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
    interpolation: str = "bicubic",
) -> EvalTransform:
    """Resize the shorter side to ``input_size / crop_pct``, centre crop, normalise (timm's eval transform)."""
    resample = resolve_interpolation(interpolation)
    if isinstance(resample, tuple):
        raise ValueError("evaluation needs a fixed interpolation, not 'random'")
    return EvalTransform(input_size, crop_pct=crop_pct, mean=mean, std=std, interpolation=resample)
