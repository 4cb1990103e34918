"""Images <-> per-patch pixel vectors in the layout MAE's `decoder_pred` predicts, and the norm-pix target.

A patch vector is ordered (pixel row, pixel column, channel) with the channel fastest; patches are in raster
order, like the patch embedding's tokens. This is not the conv-kernel order (channel, row, column).
"""
from __future__ import annotations

import math

import paddle

#: added to the per-patch variance before the square root (upstream value)
NORM_PIX_EPS = 1e-6


def patchify(images: paddle.Tensor, patch_size: int) -> paddle.Tensor:
    """[N, C, H, W] -> [N, (H/p) * (W/p), p * p * C]."""
    if images.ndim != 4:
        raise ValueError(f"patchify expects an image batch [N, C, H, W], got shape {list(images.shape)}")
    n, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch_size}")
    gh, gw = h // patch_size, w // patch_size
    x = images.reshape([n, c, gh, patch_size, gw, patch_size]).transpose([0, 2, 4, 3, 5, 1])
    return x.reshape([n, gh * gw, patch_size * patch_size * c])


def unpatchify(patches: paddle.Tensor, patch_size: int, in_chans: int = 3) -> paddle.Tensor:
    """[N, L, p * p * C] -> [N, C, sqrt(L) * p, sqrt(L) * p] (square images only), the exact inverse of patchify."""
    n, length, dim = patches.shape
    side = int(round(math.sqrt(length)))
    if side * side != length or dim != patch_size * patch_size * in_chans:
        raise ValueError(
            f"unpatchify expects [N, G*G, {patch_size}*{patch_size}*{in_chans}] patch vectors, "
            f"got shape {list(patches.shape)}"
        )
    x = patches.reshape([n, side, side, patch_size, patch_size, in_chans]).transpose([0, 5, 1, 3, 2, 4])
    return x.reshape([n, in_chans, side * patch_size, side * patch_size])


def patch_statistics(patches: paddle.Tensor):
    """Per-patch mean and unbiased variance over the last axis, each [N, L, 1]."""
    mean = patches.mean(axis=-1, keepdim=True)
    # written out: paddle.var promotes dtypes internally and logs a warning on every call
    var = ((patches - mean) ** 2).sum(axis=-1, keepdim=True) / (patches.shape[-1] - 1)
    return mean, var


def normalize_patches(patches: paddle.Tensor) -> paddle.Tensor:
    """Each patch vector standardised on its own: (x - mean) / sqrt(var + 1e-6), the `norm_pix_loss` target."""
    mean, var = patch_statistics(patches)
    return (patches - mean) / paddle.sqrt(var + NORM_PIX_EPS)
