"""Evo-LeViT: LeViT with slow-fast token evolution (Evo-ViT, `levit/evo_levit.py` upstream).

The global class attention g (head mean of the cls query's attention, blended with t = 0.5, or sigmoid(theta) of
each attention from the switch epoch on) ranks the patch tokens. A pruned unit (one block in layer-wise mode, the
run of pruned blocks of a stage in stage-wise mode) sees cls, the top tokens and one representative token, the
g-weighted mean of the placeholders; afterwards every placeholder gets the representative token's summed
attention and MLP increments (the fast update).

Tokens never leave raster order here: the kept tokens are gathered out and scattered back, the placeholders are
updated in place. Upstream sorts the sequence and restores raster order before each downsampling; keeping the
order makes that restore the identity, with the same result. Between stages the subsampling attention keeps g on
the even grid cells, blends in its own cls attention and rescales g to its previous total.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Tuple

import paddle
import paddle.nn as nn

from paddlemix_eva.layers import init_trunc_normal
from paddlemix_eva.models.evovit.configuration import EvoLeViTConfig, kept_tokens
from paddlemix_eva.models.evovit.levit_layers import (
    LeViTBlock,
    LeViTDownsample,
    LeViTStem,
    NormLinear,
    fuse_batch_norms,
    subsample_grid,
)
from paddlemix_eva.models.evovit.selection import blend, top_indices
from paddlemix_eva.models.modeling_utils import ConvertedWeightsMixin, EVAPretrainedModel
from paddlemix_eva.models.tokens import gather_tokens, scatter_tokens

logger = logging.getLogger(__name__)


def representative_token(patches: paddle.Tensor, scores: paddle.Tensor, placeholder: paddle.Tensor) -> paddle.Tensor:
    """sum_j w_j x_j over the placeholders with w proportional to their score: [B, 1, C]. `placeholder` [B, N] is
    1.0 for placeholders, 0.0 for kept tokens."""
    weights = scores * placeholder
    weights = weights / weights.sum(axis=1, keepdim=True)
    return paddle.matmul(weights.unsqueeze(1), patches)


class EvoLeViTStage(nn.Layer):
    """The blocks of one stage and the selection plan over them."""

    def __init__(self, blocks: List[LeViTBlock], ratios: List[float], side: int):
        super().__init__()
        self.blocks = nn.LayerList(blocks)
        self.ratios = ratios
        self.side = side
        self.num_full = sum(1 for r in ratios if r >= 1.0)

    def units(self, stage_wise: bool) -> List[Tuple[int, int]]:
        """[start, stop) block ranges of the pruned units."""
        if self.num_full == len(self.blocks):
            return []
        if stage_wise:
            return [(self.num_full, len(self.blocks))]
        return [(i, i + 1) for i in range(self.num_full, len(self.blocks))]


class EvoLeViT(ConvertedWeightsMixin, EVAPretrainedModel):
    """Evo-LeViT classifier. Eval: (head + head_dist) / 2 on the mean of the final patch tokens (head alone without
    distillation). Training returns (head, head_cls, head_dist, head_cls_dist) logits (the last two only with
    `distillation`), the `cls` heads reading the cls token."""

    is_classifier = True

    config_class = EvoLeViTConfig
    base_model_prefix = "evo_levit"
    macs_linear_in_depth = False
    _optional_checkpoint_keys = (r"^head", )
    #: the tradeoffs theta reach the loss only from the switch on, and not all of them (data parallel needs to know)
    varying_parameter_use = True

    def __init__(self, config: EvoLeViTConfig):
        super().__init__(config)
        dims, sides = config.embed_dims, config.grid_sizes()
        self.patch_embed = LeViTStem(config.in_chans, dims[0])
        zeros = nn.initializer.Constant(0.0)
        self.cls_token = self.create_parameter([1, 1, dims[0]], default_initializer=zeros)
        self.poss = self.create_parameter([1, sides[0] ** 2 + 1, dims[0]], default_initializer=zeros)
        rate = config.drop_path_rate  # LeViT: the same stochastic depth on every residual
        stages, downsamples = [], []
        for s, (dim, heads, ratios) in enumerate(zip(dims, config.num_heads, config.stage_ratios())):
            blocks = [LeViTBlock(dim, config.key_dim, heads, config.attn_ratio, config.mlp_ratio, rate)
                      for _ in ratios]
            stages.append(EvoLeViTStage(blocks, ratios, sides[s]))
            if s + 1 < len(dims):
                downsamples.append(LeViTDownsample(dim, dims[s + 1], config.key_dim, config.subsample_attn_ratio,
                                                   config.mlp_ratio, sides[s], rate))
        self.stages = nn.LayerList(stages)
        self.downsamples = nn.LayerList(downsamples)
        width, classes = dims[-1], config.num_classes
        self.head = NormLinear(width, classes)
        self.head_cls = NormLinear(width, classes)
        self.head_dist = NormLinear(width, classes) if config.distillation else None
        self.head_cls_dist = NormLinear(width, classes) if config.distillation else None
        self.stage_wise = True
        self.learnable_tradeoff = True
        self.init_weights()

    def _init_parameters(self) -> None:
        """Sub-layers initialise themselves (LeViT's rules); poss trunc-normal 0.02, cls token zeros."""
        init_trunc_normal(self.poss, 0.02)

    def no_weight_decay(self) -> List[str]:
        return ["poss"]  # and every 1-D parameter (BN, theta), which never decays

    def fuse_batch_norms(self) -> None:
        """Fold every BatchNorm into its Conv / Linear for inference (upstream's `fuse`, used to evaluate and
        benchmark): same eval-mode logits, fewer ops. Training after this is not supported."""
        self.eval()
        count = fuse_batch_norms(self)
        self.batch_norms_fused = True
        logger.info("EvoLeViT: %d BatchNorms folded into their Conv / Linear layers", count)

    def train(self, mode: bool = True):
        if mode and getattr(self, "batch_norms_fused", False):
            raise RuntimeError("this EvoLeViT has its BatchNorms folded (fuse_batch_norms) and cannot train; "
                               "load the unfused weights to train")
        return super().train(mode)

    # ------------------------------------------------------------------------------------ modes
    def set_stage_wise(self, stage_wise: bool) -> None:
        """Training: one pruned unit per stage (from the switch epoch) or one per block (before). Eval is
        stage-wise."""
        self.stage_wise = bool(stage_wise)

    def set_learnable_tradeoff(self, learnable: bool) -> None:
        """Training: t = sigmoid(theta) per attention (from the switch epoch on) or a fixed 0.5. Eval: sigmoid."""
        self.learnable_tradeoff = bool(learnable)

    @property
    def _learnable(self) -> bool:
        return self.learnable_tradeoff or not self.training

    # ---------------------------------------------------------------------------------- forward
    def embed(self, image: paddle.Tensor) -> paddle.Tensor:
        """[B, 1 + N, C0]: cls token and stem tokens, plus `poss`."""
        if image.ndim != 4 or image.shape[1] != self.config.in_chans or image.shape[2:] != [self.config.image_size] * 2:
            raise ValueError(
                f"EvoLeViT expects images [B, {self.config.in_chans}, {self.config.image_size}, "
                f"{self.config.image_size}] (config.image_size), got {list(image.shape)}"
            )
        patches = self.patch_embed(image)
        cls = self.cls_token.astype(patches.dtype).expand([patches.shape[0], -1, -1])
        return paddle.concat([cls, patches], axis=1) + self.poss.astype(patches.dtype)

    def run_unit(
        self, blocks: List[LeViTBlock], x: paddle.Tensor, scores: paddle.Tensor, keep: int
    ) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """One pruned unit on x [B, 1 + N, C] with scores [B, N]: the top `keep` tokens and the representative
        token through `blocks`, then the fast update of the placeholders. Returns (x, scores) in raster order."""
        patches = x[:, 1:]
        kept_index = top_indices(scores, keep)
        placeholder = paddle.put_along_axis(
            paddle.ones_like(scores), kept_index, paddle.zeros(kept_index.shape, scores.dtype), axis=1
        )
        representative = representative_token(patches, scores, placeholder)
        work = paddle.concat([x[:, :1], gather_tokens(patches, kept_index), representative], axis=1)
        kept_scores = paddle.take_along_axis(scores, kept_index, axis=1)
        for block in blocks:
            work, cls_attention = block(work)
            kept_scores = blend(kept_scores, cls_attention[:, :keep], block.attn.tradeoff(self._learnable))
        # the representative token's attention and MLP increments, summed over the unit (the residuals telescope)
        increments = work[:, -1:] - representative
        # the same increment on every placeholder, as an outer product: a [B, 1, C] * [B, N, 1] broadcast drops
        # oneDNN's binary kernels off their fast path (the exported model ran ~30% slower than the plain LeViT)
        patches = patches + paddle.matmul(placeholder.unsqueeze(-1), increments)
        patches = scatter_tokens(patches, kept_index, work[:, 1:keep + 1])
        scores = paddle.put_along_axis(scores, kept_index, kept_scores, axis=1)
        return paddle.concat([work[:, :1], patches], axis=1), scores

    def run_stage(
        self, index: int, x: paddle.Tensor, scores: Optional[paddle.Tensor]
    ) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Stage `index` on x [B, 1 + N, C] (raster order) with the running scores (None before the first
        attention of the network)."""
        stage = self.stages[index]
        for block in stage.blocks[: stage.num_full]:
            x, cls_attention = block(x)
            tradeoff = block.attn.tradeoff(self._learnable)
            scores = cls_attention if scores is None else blend(scores, cls_attention, tradeoff)
        for start, stop in stage.units(self.stage_wise or not self.training):
            keep = kept_tokens(stage.side**2, stage.ratios[start])
            x, scores = self.run_unit(stage.blocks[start:stop], x, scores, keep)
        return x, scores

    def downsample(self, index: int, x: paddle.Tensor, scores: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Subsampling attention after stage `index`: scores kept on the even grid cells, blended with its cls
        attention, rescaled to their total before the subsampling."""
        layer = self.downsamples[index]
        total = scores.sum(axis=1, keepdim=True)
        x, cls_attention = layer(x)
        kept = subsample_grid(scores.unsqueeze(-1), layer.attn.side).squeeze(-1)
        scores = blend(kept, cls_attention, layer.attn.tradeoff(self._learnable))
        return x, scores * total / scores.sum(axis=1, keepdim=True)

    def forward_features(self, image: paddle.Tensor) -> paddle.Tensor:
        """Final tokens [B, 1 + N_last, C_last] (cls first, patches in raster order)."""
        x, scores = self.embed(image), None
        for index in range(len(self.stages)):
            x, scores = self.run_stage(index, x, scores)
            if index < len(self.downsamples):
                x, scores = self.downsample(index, x, scores)
        return x

    def forward_head(self, tokens: paddle.Tensor):
        pooled, cls = tokens[:, 1:].mean(axis=1), tokens[:, 0]
        if self.training:
            logits = (self.head(pooled), self.head_cls(cls))
            if self.head_dist is not None:
                logits += (self.head_dist(pooled), self.head_cls_dist(cls))
            return logits
        if self.head_dist is None:
            return self.head(pooled)
        return (self.head(pooled) + self.head_dist(pooled)) / 2

    def extract_feat(self, image: paddle.Tensor, patch_tokens: bool = False) -> paddle.Tensor:
        """Mean-pooled final features [B, C] (what the heads see), or the final patch tokens [B, N, C]."""
        tokens = self.forward_features(image)
        return tokens[:, 1:] if patch_tokens else tokens[:, 1:].mean(axis=1)

    def forward(self, image: paddle.Tensor):
        """Logits [B, classes] in eval mode; the tuple of head logits in training (see the class doc)."""
        return self.forward_head(self.forward_features(image))
