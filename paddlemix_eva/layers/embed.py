"""Patch embedding and absolute position tables (resampling for another grid)."""
from __future__ import annotations

import logging
import math
from typing import Dict, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

logger = logging.getLogger(__name__)


class PatchEmbed(nn.Layer):
    """Non-overlapping patches by a strided convolution, flattened in raster (row-major) order."""

    def __init__(self, image_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.in_chans = int(in_chans)
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    @property
    def grid_size(self) -> Tuple[int, int]:
        side = self.image_size // self.patch_size
        return side, side

    @property
    def num_patches(self) -> int:
        h, w = self.grid_size
        return h * w

    def check_input(self, image: paddle.Tensor, owner: str = "model") -> None:
        """Refuse anything but [B, in_chans, image_size, image_size] with a message saying what was expected."""
        if image.ndim != 4:
            raise ValueError(
                f"{owner} expects a 4-D image batch [B, {self.in_chans}, {self.image_size}, {self.image_size}], "
                f"got shape {list(image.shape)}"
            )
        _, c, h, w = image.shape
        if c != self.in_chans:
            raise ValueError(
                f"{owner} expects {self.in_chans}-channel images (config.in_chans), got {c} channels "
                f"(input shape {list(image.shape)})"
            )
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"{owner} was built for {self.image_size}x{self.image_size} images (config.image_size), got "
                f"{h}x{w}. Resize the input, or rebuild the model at the new size with "
                f"model.set_input_size({h}) / from_pretrained(..., image_size={h}), which interpolates pos_embed "
                f"and rebuilds RoPE."
            )

    def forward(self, image: paddle.Tensor) -> paddle.Tensor:
        x = self.proj(image)  # [B, D, gh, gw]
        return x.flatten(2).transpose([0, 2, 1])


def scale_gradient(x: paddle.Tensor, scale: float) -> paddle.Tensor:
    """Identity in the forward pass; the backward pass sees `scale` x the gradient (0 = detach)."""
    if scale == 1.0:
        return x
    detached = x.detach()
    if scale == 0.0:
        return detached
    return detached + scale * (x - detached)


def resample_abs_pos_embed(
    pos_embed: paddle.Tensor, new_grid: Tuple[int, int], num_prefix_tokens: int = 1
) -> paddle.Tensor:
    """Bicubic resize (align_corners=False, no antialias, as the official EVA-02 finetune code) of the grid part of
    a [1, prefix + gh*gw, D] position table; prefix rows (cls) are kept."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = int(round(math.sqrt(grid.shape[1])))
    if old * old != grid.shape[1]:
        raise ValueError(f"pos_embed grid of {grid.shape[1]} tokens is not square; cannot resample it")
    if (old, old) == tuple(new_grid):
        return pos_embed
    dim = grid.shape[-1]
    dtype = grid.dtype
    grid = grid.astype("float32").reshape([1, old, old, dim]).transpose([0, 3, 1, 2])
    grid = F.interpolate(grid, size=list(new_grid), mode="bicubic", align_corners=False)
    grid = grid.transpose([0, 2, 3, 1]).reshape([1, new_grid[0] * new_grid[1], dim]).astype(dtype)
    return paddle.concat([prefix, grid], axis=1)


def resample_checkpoint_pos_embed(
    state_dict: Dict[str, np.ndarray], key: str, grid_size: int, width: int, source: str
) -> None:
    """Fit a checkpoint's [1, 1 + g*g, width] position table under `key` to a grid_size x grid_size model, in
    place and with a warning (`resample_abs_pos_embed`). Tables that already fit, of another width or of a
    non-square grid are left for the loader's shape check."""
    pos = state_dict.get(key)
    if pos is None or pos.ndim != 3 or pos.shape[1] == grid_size**2 + 1 or pos.shape[2] != width:
        return
    old_side = int(round(math.sqrt(pos.shape[1] - 1)))
    if old_side * old_side != pos.shape[1] - 1:
        return
    logger.warning("%s: %s is for a %dx%d patch grid; interpolating it bicubically to the %dx%d grid of this model",
                   source, key, old_side, old_side, grid_size, grid_size)
    table = paddle.to_tensor(np.asarray(pos, dtype=np.float32))
    state_dict[key] = resample_abs_pos_embed(table, (grid_size, grid_size)).numpy().astype(pos.dtype)
