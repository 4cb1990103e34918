"""Configurations of Evo-ViT (Xu et al., 2022): Evo-DeiT, Evo-LeViT and the RegNetY teacher of the LeViT recipe.

Shapes derived from the fields (kept token counts, grids, stage layouts) are properties, so a config is the only
place they come from. Named sizes live in `zoo_table.py`.
"""
from __future__ import annotations

import math
from typing import List, Sequence

from paddlemix_eva.models.configuration_utils import IMAGENET_PREPROCESSING, ImageClassifierConfig
from paddlemix_eva.models.trunk import TrunkSpec, ViTShapeMixin

#: per-layer score blend t of Evo-DeiT (g <- (1 - t) g + t cls_attn); the same list for every size
DEIT_TRADEOFFS = (1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)


def kept_tokens(num_tokens: int, ratio: float) -> int:
    """floor(num_tokens * ratio): how many tokens a pruned layer keeps (upstream truncates)."""
    return int(math.floor(num_tokens * ratio))


class _EvoClassifierConfig(ImageClassifierConfig):
    """Fields every Evo classifier shares: input, classes; DeiT's evaluation preprocessing."""

    preprocessing_defaults = IMAGENET_PREPROCESSING

    def _set_common(self, image_size, in_chans, num_classes, drop_path_rate) -> None:
        self.image_size = int(image_size)
        self.in_chans = int(in_chans)
        self.num_classes = int(num_classes)
        self.drop_path_rate = float(drop_path_rate)


class EvoDeiTConfig(ViTShapeMixin, _EvoClassifierConfig):
    """Evo-DeiT: a DeiT (pre-norm ViT, GELU MLP, q/k/v with bias, LN eps 1e-6) whose layers from the first stage
    start on see only cls plus the `keep_ratio` share of patch tokens with the highest global class attention.

    `stage_starts` are the layers where a stage (of pruned layers) begins; each stage runs to the next start or to
    the last layer. `tradeoffs[i]` is layer i's blend weight t of the global class attention. `keep_ratio=1`
    disables selection: the model is then exactly the plain ViT. `cls_head` builds the training-only auxiliary
    classifier on the cls token (`norm_cls`, `head_cls`).
    """

    model_type = "evo_deit"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 384,
        layers: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        keep_ratio: float = 0.5,
        stage_starts: Sequence[int] = (4, 8),
        tradeoffs: Sequence[float] = DEIT_TRADEOFFS,
        cls_head: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("return_dict", True)
        super().__init__(**kwargs)
        self._set_common(image_size, in_chans, num_classes, drop_path_rate)
        self.patch_size = int(patch_size)
        self.embed_dim = int(embed_dim)
        self.layers = int(layers)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.drop_rate = float(drop_rate)
        self.attn_drop_rate = float(attn_drop_rate)
        self.keep_ratio = float(keep_ratio)
        self.stage_starts = [int(s) for s in stage_starts]
        self.tradeoffs = [float(t) for t in tradeoffs]
        self.cls_head = bool(cls_head)
        self.validate()

    @property
    def num_kept(self) -> int:
        """Patch tokens a pruned layer sees (98 of 196 at 224 px)."""
        return kept_tokens(self.num_patches, self.keep_ratio)

    @property
    def prunes(self) -> bool:
        return self.keep_ratio < 1.0 and bool(self.stage_starts)

    def stages(self) -> List[range]:
        """The layer ranges of the pruned stages."""
        ends = self.stage_starts[1:] + [self.layers]
        return [range(start, end) for start, end in zip(self.stage_starts, ends)]

    def trunk_spec(self) -> TrunkSpec:
        return self.plain_vit_trunk_spec()

    def validate(self) -> None:
        self.check_vit_shape()
        if not 0 < self.keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if len(self.tradeoffs) != self.layers:
            raise ValueError(f"tradeoffs has {len(self.tradeoffs)} values; give one per layer ({self.layers})")
        if any(not 0 <= t <= 1 for t in self.tradeoffs):
            raise ValueError(f"tradeoffs must lie in [0, 1], got {self.tradeoffs}")
        if self.stage_starts != sorted(set(self.stage_starts)) or any(
            not 0 < s < self.layers for s in self.stage_starts
        ):
            raise ValueError(
                f"stage_starts must be increasing layer indices in [1, {self.layers - 1}] (layer 0 must see every "
                f"token to score them), got {self.stage_starts}"
            )
        if self.prunes and self.num_kept < 1:
            raise ValueError(f"keep_ratio {self.keep_ratio} keeps no token of {self.num_patches}")


class EvoLeViTConfig(_EvoClassifierConfig):
    """Evo-LeViT: LeViT (conv stem, three stages of attention + MLP residuals with BatchNorm'd Linears, attention
    subsampling between stages) with a cls token and absolute position embeddings instead of attention biases.

    `prune_ratios` has one entry per attention block over all stages (1 = every token); in stage-wise mode the
    run of pruned blocks of a stage is one unit with one selection. Placeholders get the representative token's
    residual increments (the fast update).
    """

    model_type = "evo_levit"

    def __init__(
        self,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (128, 256, 384),
        key_dim: int = 16,
        num_heads: Sequence[int] = (4, 6, 8),
        depths: Sequence[int] = (2, 3, 4),
        attn_ratio: float = 2.0,
        mlp_ratio: float = 2.0,
        subsample_attn_ratio: float = 4.0,
        patch_size: int = 16,
        prune_ratios: Sequence[float] = (1.0, 1.0) + (0.5,) * 7,
        drop_path_rate: float = 0.0,
        distillation: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("return_dict", True)
        super().__init__(**kwargs)
        self._set_common(image_size, in_chans, num_classes, drop_path_rate)
        self.embed_dims = [int(c) for c in embed_dims]
        self.key_dim = int(key_dim)
        self.num_heads = [int(h) for h in num_heads]
        self.depths = [int(d) for d in depths]
        self.attn_ratio = float(attn_ratio)
        self.mlp_ratio = float(mlp_ratio)
        self.subsample_attn_ratio = float(subsample_attn_ratio)
        self.patch_size = int(patch_size)
        self.prune_ratios = [float(r) for r in prune_ratios]
        self.distillation = bool(distillation)
        self.validate()

    @property
    def layers(self) -> int:
        """Attention blocks in all (what the fine-tuning runner's layer decay would count)."""
        return sum(self.depths)

    def grid_sizes(self) -> List[int]:
        """Token grid side per stage: the stem's 1/16 grid, then ceil-halved by each stride-2 subsampling."""
        sides = [self.image_size // self.patch_size]
        for _ in self.depths[1:]:
            sides.append((sides[-1] - 1) // 2 + 1)
        return sides

    def stage_ratios(self) -> List[List[float]]:
        """prune_ratios split per stage."""
        out, start = [], 0
        for depth in self.depths:
            out.append(self.prune_ratios[start:start + depth])
            start += depth
        return out

    def validate(self) -> None:
        stages = len(self.depths)
        if not len(self.embed_dims) == len(self.num_heads) == stages:
            raise ValueError(
                f"embed_dims {self.embed_dims}, num_heads {self.num_heads} and depths {self.depths} must have one "
                "entry per stage"
            )
        if self.patch_size != 16:
            raise ValueError("the LeViT stem has four stride-2 convolutions: patch_size must be 16")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of 16")
        if len(self.prune_ratios) != self.layers:
            raise ValueError(
                f"prune_ratios has {len(self.prune_ratios)} values; give one per attention block ({self.layers})"
            )
        if self.prune_ratios[0] < 1:
            raise ValueError("the first attention block must see every token (prune ratio 1) to score them")
        for ratios, side in zip(self.stage_ratios(), self.grid_sizes()):
            if any(not 0 < r <= 1 for r in ratios) or any(kept_tokens(side * side, r) < 1 for r in ratios):
                raise ValueError(f"prune ratios must lie in (0, 1] and keep a token of {side * side}: {ratios}")
            pruned = [r for r in ratios if r < 1]
            if len(set(pruned)) > 1 or ratios[len(ratios) - len(pruned):] != pruned:
                raise ValueError(
                    "the pruned blocks of a stage must be its last ones and share one ratio (stage-wise selection "
                    f"runs them as one unit); got {ratios}"
                )
        if self.embed_dims[0] % 8:
            raise ValueError(f"embed_dims[0] {self.embed_dims[0]} must be divisible by 8 (the stem's widths)")


class RegNetConfig(ImageClassifierConfig):
    """RegNetY (Radosavovic et al., 2020) as timm builds it: stem conv 3x3/2, stages of bottlenecks with grouped
    3x3 convs and squeeze-excitation, average pool, Linear head. Defaults are timm's `regnety_160`."""

    model_type = "regnety"
    preprocessing_defaults = IMAGENET_PREPROCESSING

    def __init__(
        self,
        image_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        stem_width: int = 32,
        widths: Sequence[int] = (224, 448, 1232, 3024),
        depths: Sequence[int] = (2, 4, 11, 1),
        group_width: int = 112,
        se_ratio: float = 0.25,
        **kwargs,
    ):
        kwargs.setdefault("return_dict", True)
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.in_chans = int(in_chans)
        self.num_classes = int(num_classes)
        self.stem_width = int(stem_width)
        self.widths = [int(w) for w in widths]
        self.depths = [int(d) for d in depths]
        self.group_width = int(group_width)
        self.se_ratio = float(se_ratio)
        if len(self.widths) != len(self.depths):
            raise ValueError(f"widths {self.widths} and depths {self.depths} must have one entry per stage")
        if any(w % self.group_width for w in self.widths):
            raise ValueError(f"every stage width {self.widths} must be a multiple of group_width {self.group_width}")
