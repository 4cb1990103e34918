"""Stochastic depth and FLIP-style patch dropout."""
from __future__ import annotations

from typing import Optional, Tuple

import paddle
import paddle.nn as nn


def drop_path(x: paddle.Tensor, drop_prob: float, training: bool) -> paddle.Tensor:
    """Stochastic depth: drop the residual branch per sample and rescale the survivors."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    mask = paddle.floor(keep_prob + paddle.rand(shape, dtype="float32")).astype(x.dtype)
    return x / keep_prob * mask


class DropPath(nn.Layer):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def check_patch_dropout(ratio: float) -> float:
    """`ratio` as a float, refused outside [0, 1) (a ratio of 1 would keep no patch)."""
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"patch_dropout must be in [0, 1), got {ratio}")
    return ratio


def num_kept_patches(num_patches: int, ratio: float) -> int:
    """Patch tokens kept per sample: round((1 - ratio) * N), at least 1.

    EVA-CLIP / open_clip / timm take int() of the same product: equal whenever it is an integer (e.g. every even
    grid at 0.5); round() is not thrown off by float error (int((1 - 0.8) * 10) is 1, round gives 2).
    """
    return max(1, int(round((1.0 - float(ratio)) * num_patches)))


def with_prefix(keep_index: paddle.Tensor, num_prefix_tokens: int) -> paddle.Tensor:
    """Kept patch indices [B, K] -> token indices [B, prefix + K]: 0 .. prefix - 1, then each index + prefix."""
    if not num_prefix_tokens:
        return keep_index
    prefix = paddle.arange(num_prefix_tokens, dtype=keep_index.dtype).unsqueeze(0)
    prefix = prefix.expand([keep_index.shape[0], num_prefix_tokens])
    return paddle.concat([prefix, keep_index + num_prefix_tokens], axis=1)


def gather_rows(x: paddle.Tensor, index: paddle.Tensor) -> paddle.Tensor:
    """x [B, N, C], index [B, K] -> x[b, index[b, k]] as [B, K, C], by one gather on the [B * N, C] view
    (differentiable in x: the gradient of a dropped row is 0)."""
    batch, num_tokens, channels = x.shape[0], x.shape[1], x.shape[-1]
    offsets = paddle.arange(batch, dtype=index.dtype).unsqueeze(1) * num_tokens
    rows = paddle.gather(x.reshape([-1, channels]), (index + offsets).reshape([-1]))
    return rows.reshape([batch, index.shape[1], channels])


class PatchDropout(nn.Layer):
    """FLIP-style patch dropout (Li et al., 2023; EVA-CLIP trains with 50%): in training each sample keeps a random
    `num_kept_patches(N, ratio)` of its N patch tokens; the `num_prefix_tokens` leading tokens (cls) always stay.

    `forward(x)` on tokens [B, prefix + N, C] returns `(tokens, keep_index)`:
    - training with ratio > 0: the prefix tokens followed by the kept patch tokens, [B, prefix + K, C], and
      `keep_index` [B, K] int64, the kept patches' indices among the N patches (0-based, the prefix not
      counted), sorted ascending per sample (raster order; the selection itself is random). The ranking is the
      argsort of uniform noise from Paddle's RNG (`paddle.seed` reproduces it); each sample draws its own.
    - eval mode or ratio 0: `(x, None)`, x itself (no copy, no op), so outputs are bit-identical to a model
      without the layer.

    Position information must be in the tokens before the selection (add the absolute pos_embed first); RoPE
    tables must follow the kept indices (`gather_rope_tables`). There is no rescaling: unlike dropout, FLIP
    drops inputs of attention, not activations.
    """

    def __init__(self, ratio: float = 0.5, num_prefix_tokens: int = 1):
        super().__init__()
        self.ratio = check_patch_dropout(ratio)
        self.num_prefix_tokens = int(num_prefix_tokens)

    def keep_index(self, batch: int, num_patches: int) -> paddle.Tensor:
        """[batch, K] sorted indices of the kept patches, a fresh random draw per sample."""
        keep = num_kept_patches(num_patches, self.ratio)
        noise = paddle.rand([batch, num_patches], dtype="float32")
        index = paddle.argsort(noise, axis=1)[:, :keep]
        index = paddle.sort(index, axis=1)
        index.stop_gradient = True
        return index

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        if not self.training or self.ratio == 0.0:
            return x, None
        prefix = self.num_prefix_tokens
        index = self.keep_index(x.shape[0], x.shape[1] - prefix)
        return gather_rows(x, with_prefix(index, prefix)), index

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, num_prefix_tokens={self.num_prefix_tokens}"
