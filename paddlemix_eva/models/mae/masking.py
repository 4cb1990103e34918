"""MAE's per-sample random masking: a random permutation of the patch tokens from the argsort of uniform noise.

Unlike EVA-02's block-wise `bool_masked_pos`, masked tokens are removed from the encoder's input, not replaced.
The noise can be given explicitly, so masking is reproducible per sample (the data pipeline draws it from each
sample's own seed, which keeps data-parallel runs identical to a single process).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import paddle

from paddlemix_eva.models.tokens import gather_tokens


class MaskedTokens(NamedTuple):
    """Result of `random_masking`."""

    visible: paddle.Tensor  # [N, len_keep, D] kept tokens, in shuffled (not raster) order
    mask: paddle.Tensor  # [N, L] float, 1 = removed, 0 = visible, in raster order
    ids_restore: paddle.Tensor  # [N, L] int64, the inverse of the shuffle


def check_mask_ratio(mask_ratio: float) -> None:
    if not 0.0 < float(mask_ratio) < 1.0:
        raise ValueError(f"mask_ratio must be in the open interval (0, 1), got {mask_ratio}")


def num_kept_tokens(num_patches: int, mask_ratio: float) -> int:
    """Tokens kept per sample, floor(L * (1 - ratio)); refuses ratios outside (0, 1) or that keep nothing."""
    check_mask_ratio(mask_ratio)
    len_keep = int(math.floor(num_patches * (1.0 - float(mask_ratio))))
    if len_keep < 1:
        raise ValueError(
            f"mask_ratio {mask_ratio} keeps no token of {num_patches} patches (floor({num_patches} x "
            f"{1 - mask_ratio:.4g}) = 0); lower the ratio"
        )
    return len_keep


def random_masking(x: paddle.Tensor, mask_ratio: float, noise: Optional[paddle.Tensor] = None) -> MaskedTokens:
    """Keep floor(L * (1 - mask_ratio)) tokens of each sample of [N, L, D]: those with the smallest noise."""
    n, length, _ = x.shape
    len_keep = num_kept_tokens(length, mask_ratio)
    if noise is None:
        noise = paddle.rand([n, length], dtype="float32")
    elif list(noise.shape) != [n, length]:
        raise ValueError(f"masking noise must have shape [batch, patches] = {[n, length]}, got {list(noise.shape)}")
    ids_shuffle = paddle.argsort(noise, axis=1)
    ids_restore = paddle.argsort(ids_shuffle, axis=1)
    visible = gather_tokens(x, ids_shuffle[:, :len_keep])
    shuffled_mask = paddle.concat(
        [paddle.zeros([n, len_keep], dtype=x.dtype), paddle.ones([n, length - len_keep], dtype=x.dtype)], axis=1
    )
    mask = paddle.take_along_axis(shuffled_mask, ids_restore, axis=1)
    return MaskedTokens(visible, mask, ids_restore)
