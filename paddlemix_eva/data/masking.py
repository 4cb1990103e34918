"""BEiT-style block-wise masking for masked image modeling (EVA-02 masks 105 of 256 patches per image)."""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np


class MaskingGenerator:
    """Draw a [H, W] boolean mask of about `num_masking_patches` patches made of rectangular blocks.

    Blocks of `min_num_patches`..`max_num_patches` patches with aspect ratio log-uniform in [min_aspect,
    1/min_aspect] are placed at random; a block is kept only if it masks new patches without overshooting the
    target, so the count never exceeds it (and may fall short when nothing fits). Deterministic for a given
    `np.random.Generator`.
    """

    def __init__(
        self,
        input_size: Union[int, Tuple[int, int]],
        num_masking_patches: int = 105,
        min_num_patches: int = 16,
        max_num_patches: Optional[int] = None,
        min_aspect: float = 0.3,
        max_aspect: Optional[float] = None,
        attempts: int = 10,
    ):
        self.height, self.width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.num_patches = self.height * self.width
        if not 0 <= num_masking_patches <= self.num_patches:
            raise ValueError(
                f"cannot mask {num_masking_patches} patches of a {self.height}x{self.width} grid ({self.num_patches} "
                "patches); lower num_mask_patches"
            )
        if min_num_patches < 1:
            raise ValueError(f"min_num_patches must be >= 1, got {min_num_patches}")
        self.num_masking_patches = int(num_masking_patches)
        self.min_num_patches = int(min_num_patches)
        self.max_num_patches = int(max_num_patches or num_masking_patches)
        max_aspect = max_aspect or 1.0 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
        self.attempts = attempts

    def __repr__(self) -> str:
        return (
            f"MaskingGenerator({self.height}x{self.width}, target={self.num_masking_patches}, "
            f"block={self.min_num_patches}..{self.max_num_patches}, log_aspect={self.log_aspect_ratio})"
        )

    def _place_block(self, mask: np.ndarray, max_patches: int, rng: np.random.Generator) -> int:
        """Try to add one block of at most `max_patches` new patches; return how many were masked."""
        for _ in range(self.attempts):
            # below the minimum block size the remaining budget itself bounds the area (as BEiT's random.uniform)
            low, high = sorted((self.min_num_patches, max_patches))
            target_area = rng.uniform(low, high)
            aspect = math.exp(rng.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < self.width and h < self.height:
                top = int(rng.integers(0, self.height - h + 1))
                left = int(rng.integers(0, self.width - w + 1))
                window = mask[top : top + h, left : left + w]
                new = h * w - int(window.sum())
                if 0 < new <= max_patches:
                    window[...] = True
                    return new
        return 0

    def __call__(self, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        rng = rng if rng is not None else np.random.default_rng()
        mask = np.zeros((self.height, self.width), dtype=bool)
        count = 0
        while count < self.num_masking_patches:
            budget = min(self.num_masking_patches - count, self.max_num_patches)
            added = self._place_block(mask, budget, rng)
            if added == 0:
                break
            count += added
        return mask
