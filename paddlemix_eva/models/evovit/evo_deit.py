"""Evo-DeiT: DeiT whose later layers update only the informative tokens (Evo-ViT, `deit/evo_deit.py` upstream).

Every layer ranks the patch tokens by global class attention: the cls query's attention to each patch summed over
heads, blended across layers. From the first stage start on, a layer sees cls plus the top `num_kept` tokens;
the others (placeholders) skip it unchanged. In stage-wise mode (inference, and training from the switch epoch)
tokens are selected once per stage and written back to their raster positions at the stage end; in layer-wise
mode (early training) every pruned layer selects and writes back on its own. The DeiT variant has no
representative token and no fast update (upstream's code, which produced the published checkpoints).

Weights are the plain ViT's (shared `layers.Block`, q/k/v each with a bias), so with `keep_ratio=1` this is
exactly DeiT with mean pooling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from paddlemix_eva.layers import init_conv_torch_default, init_trunc_normal, init_zeros, resample_checkpoint_pos_embed
from paddlemix_eva.models.evovit.configuration import EvoDeiTConfig
from paddlemix_eva.models.evovit.selection import blend, top_indices, with_cls_row
from paddlemix_eva.models.modeling_utils import ConvertedWeightsMixin, EVAPretrainedModel
from paddlemix_eva.models.tokens import gather_tokens, scatter_tokens
from paddlemix_eva.models.trunk import ViTTrunkMixin

Logits = Union[paddle.Tensor, Tuple[paddle.Tensor, paddle.Tensor]]


@dataclass(frozen=True)
class LayerPlan:
    """What one layer does in a mode: whether it runs on the kept tokens only, selects them before it, writes
    them back after it, and whether its cls-attention row is ever read."""

    pruned: bool
    selects: bool
    restores: bool
    scores: bool


def layer_plans(config: EvoDeiTConfig, stage_wise: bool) -> List[LayerPlan]:
    """Per-layer plan for stage-wise or layer-wise selection (all plain layers when nothing is pruned)."""
    stage_of = {layer: stage for stage in config.stages() for layer in stage} if config.prunes else {}
    plans = []
    for i in range(config.layers):
        stage = stage_of.get(i)
        pruned = stage is not None
        selects = pruned and (not stage_wise or i == stage.start)
        restores = pruned and (not stage_wise or i == stage.stop - 1)
        plans.append(LayerPlan(pruned, selects, restores, scores=False))
    # A layer's row matters unless nothing selects after it, or the next layer overwrites every score (t = 1).
    for i in range(config.layers):
        later_selection = any(p.selects for p in plans[i + 1:])
        overwritten = i + 1 < config.layers and not plans[i + 1].pruned and config.tradeoffs[i + 1] == 1.0
        plans[i] = LayerPlan(plans[i].pruned, plans[i].selects, plans[i].restores, later_selection and not overwritten)
    return plans


class EvoDeiT(ConvertedWeightsMixin, ViTTrunkMixin, EVAPretrainedModel):
    """Evo-DeiT classifier: mean of all patch tokens -> `norm` -> `head`; in training also cls -> `norm_cls` ->
    `head_cls` (forward then returns both logits)."""

    is_classifier = True

    config_class = EvoDeiTConfig
    base_model_prefix = "evo_deit"
    macs_linear_in_depth = False  # pruned layers cost half: count MACs on the full forward
    _optional_checkpoint_keys = (r"^head\.", r"^head_cls\.", r"^norm_cls\.")
    _dropped_checkpoint_keys = (r"^head_cls\.", r"^norm_cls\.")

    def __init__(self, config: EvoDeiTConfig):
        super().__init__(config)
        self._build_trunk(config.trunk_spec())
        dim = config.embed_dim
        self.norm = self.norm_layer(dim)
        self.head = nn.Linear(dim, config.num_classes) if config.num_classes > 0 else None
        self.norm_cls = self.norm_layer(dim) if config.cls_head else None
        self.head_cls = nn.Linear(dim, config.num_classes) if config.cls_head and config.num_classes > 0 else None
        self.stage_wise = True
        self._plans = {mode: layer_plans(config, mode) for mode in (True, False)}
        self.init_weights()

    # ------------------------------------------------------------------------------------ modes
    def set_stage_wise(self, stage_wise: bool) -> None:
        """Training: stage-wise selection (from the switch epoch) or layer-wise (before). Eval is stage-wise."""
        self.stage_wise = bool(stage_wise)

    def remove_cls_head(self) -> None:
        """Drop the training-only cls head for deployment (the inference parameters are then DeiT's)."""
        self.norm_cls = None
        self.head_cls = None
        self.config.cls_head = False

    # ------------------------------------------------------------------------------------- init
    def _init_parameters(self) -> None:
        """Upstream: tokens and Linears trunc-normal 0.02, biases 0, LayerNorms 1/0; the patch conv keeps
        PyTorch's default (uniform +-1/sqrt(fan_in) for weight and bias)."""
        self._init_trunk(std=0.02)
        init_conv_torch_default(self.patch_embed.proj)
        for head in (self.head, self.head_cls):
            if head is not None:
                init_trunc_normal(head.weight, 0.02)
                init_zeros(head.bias)

    def no_weight_decay(self) -> List[str]:
        return ["pos_embed", "cls_token"]

    # ---------------------------------------------------------------------------------- forward
    def forward_features(self, image: paddle.Tensor) -> paddle.Tensor:
        """All tokens [B, 1 + N, D] after the last layer, patch tokens in raster order."""
        self.patch_embed.check_input(image, type(self).__name__)
        x = self._tokens(self.patch_embed(image))
        if not self.config.prunes:
            return self._forward_blocks(x)
        return self.run_layers(x)[0]

    def run_layers(
        self, x: paddle.Tensor, start: int = 0, stop: Optional[int] = None, scores: Optional[paddle.Tensor] = None
    ) -> Tuple[paddle.Tensor, Optional[paddle.Tensor]]:
        """Run layers [start, stop) on tokens x [B, 1 + N, D] with the running global class attention `scores`
        [B, N] (None before layer 0); returns both after them. A range must not split a pruned unit."""
        plans = self._plans[self.stage_wise or not self.training]
        stop = len(self.blocks) if stop is None else stop
        if plans[start].pruned and not plans[start].selects or plans[stop - 1].pruned and not plans[stop - 1].restores:
            raise ValueError(f"layers [{start}, {stop}) split a pruned unit of the current mode")
        keep = self.config.num_kept
        kept_index = kept_scores = rows = work = None
        for i in range(start, stop):
            plan, block, tradeoff = plans[i], self.blocks[i], self.config.tradeoffs[i]
            if plan.selects:
                kept_index = top_indices(scores, keep)
                kept_scores = paddle.take_along_axis(scores, kept_index, axis=1)
                rows = with_cls_row(kept_index)  # token rows of [cls, kept]: one gather, one scatter back
                work = gather_tokens(x, rows)
            current = work if plan.pruned else x
            if plan.scores:
                current, row = block.forward_with_cls_attention(current)
                cls_attention = row.detach().sum(axis=1)[:, 1:]  # heads summed, the cls key left out
                if plan.pruned:
                    kept_scores = blend(kept_scores, cls_attention, tradeoff)
                else:
                    scores = cls_attention if scores is None else blend(scores, cls_attention, tradeoff)
            else:
                current = block(current)
            if not plan.pruned:
                x = current
                continue
            work = current
            if plan.restores:
                x = scatter_tokens(x, rows, work)
                scores = paddle.put_along_axis(scores, kept_index, kept_scores, axis=1)
        return x, scores

    def forward_head(self, tokens: paddle.Tensor, pre_logits: bool = False) -> Logits:
        pooled = self.norm(tokens[:, 1:].mean(axis=1))
        if pre_logits or self.head is None:
            return pooled
        logits = self.head(pooled)
        if self.training and self.head_cls is not None:
            return logits, self.head_cls(self.norm_cls(tokens[:, 0]))
        return logits

    def extract_feat(self, image: paddle.Tensor, patch_tokens: bool = False) -> paddle.Tensor:
        """Pooled features [B, D] (what `head` sees), or the normalised patch tokens [B, N, D]."""
        tokens = self.forward_features(image)
        if patch_tokens:
            return self.norm(tokens[:, 1:])
        return self.forward_head(tokens, pre_logits=True)

    def forward(self, image: paddle.Tensor) -> Logits:
        """Logits [B, classes]; in training with the cls head, (logits, cls-head logits)."""
        return self.forward_head(self.forward_features(image))

    # ------------------------------------------------------------------------------- loading
    @classmethod
    def adapt_state_dict(cls, state_dict: Dict[str, np.ndarray], config: EvoDeiTConfig, source: str):
        """A pos_embed for another grid is resampled bicubically (the 384 px models start from 224 px ones)."""
        state_dict = super().adapt_state_dict(state_dict, config, source)
        resample_checkpoint_pos_embed(state_dict, "pos_embed", config.grid_size, config.embed_dim, source)
        return state_dict
