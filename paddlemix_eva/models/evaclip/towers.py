"""Initialise one tower of an EVA-CLIP from another model, as the paper's recipe starts training: the vision tower
from an EVA-02 MIM model (or any EVA-CLIP / EVA-02 ViT), the text tower from a CLIP model.

Sources are zoo names or model directories, read with the restricted loaders (no code runs from them); their
keys are PaddleMIX's. What a source lacks (a projection head a MIM model never had) keeps its fresh init, and
what the tower does not have (a MIM `lm_head`, a classifier `head`) is left out; both are logged. A tensor whose
shape differs is refused with its name, except position tables, which are resampled to the tower's grid.
"""
from __future__ import annotations

import logging
from typing import Dict

import numpy as np
import paddle

from paddlemix_eva.layers import resample_checkpoint_pos_embed
from paddlemix_eva.models.modeling_utils import EVAPretrainedModel
from paddlemix_eva.utils.checkpoint import CheckpointError, read_state_dict

logger = logging.getLogger(__name__)
TOWERS = ("visual", "text")
#: PaddleMIX prefixes of composite checkpoints whose vision trunk can start a vision tower
_VISION_PREFIXES = ("visual.", "student.", "")
#: the head of a ViT that is not the CLIP projection (classifier, MIM prediction head), and MIM-only tensors
_NOT_A_CLIP_HEAD = ("head.", "lm_head.", "fc_norm.", "mask_token")


def source_state_dict(source: str) -> Dict[str, np.ndarray]:
    """A zoo name's or directory's weights as {PaddleMIX key: array} (RoPE buffers dropped)."""
    _, weights, _ = EVAPretrainedModel.resolve_pretrained(source)
    return EVAPretrainedModel.adapt_state_dict(read_state_dict(weights), None, weights)


def tower_state_dict(state: Dict[str, np.ndarray], tower: str, source: str) -> Dict[str, np.ndarray]:
    """The keys of `state` that belong to `tower`, relative to it: `text.*` of a CLIP model; for the vision
    tower `visual.*` of a CLIP model, else the trunk of a ViT (`student.*` of a MIM pre-training checkpoint)."""
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, got {tower!r}")
    prefixes = ("text.",) if tower == "text" else _VISION_PREFIXES
    for prefix in prefixes:
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if prefix == "" and tower == "visual":
            part = {k: v for k, v in part.items() if not k.startswith(("text.", "teacher.", "logit_scale"))}
        if tower == "visual" and prefix != "visual.":
            part = {k: v for k, v in part.items() if not k.startswith(_NOT_A_CLIP_HEAD)}
        if any(k.startswith("blocks.") or k.startswith("transformer.") for k in part):
            return part
    what = "a CLIP model (text.* keys)" if tower == "text" else "a CLIP model (visual.*) or a ViT (blocks.*)"
    raise CheckpointError(f"{source}: no {tower} tower weights found; expected {what}, found keys like "
                          f"{sorted(state)[:5]}")


def load_tower(model, tower: str, source: str) -> None:
    """Copy `source`'s weights for `tower` into `model` (an EVACLIP), logging what was kept fresh or left out."""
    layer = getattr(model, tower)
    part = tower_state_dict(source_state_dict(source), tower, source)
    if tower == "visual":
        vision = model.config.vision_config
        resample_checkpoint_pos_embed(part, "pos_embed", vision.grid_size, vision.width, source)
    own = layer.state_dict()
    expected = {k: list(v.shape) for k, v in own.items()}
    mismatched = [f"{k} {list(v.shape)} (tower: {expected[k]})" for k, v in part.items()
                  if k in expected and list(v.shape) != expected[k]]
    if mismatched:
        raise CheckpointError(f"{source}: {tower} tower tensors of another shape: {mismatched[:6]}; the source must "
                              f"have the architecture of this model's {tower} tower ({type(layer).__name__})")
    loaded = {k: v for k, v in part.items() if k in expected}
    if not any(k.startswith(("blocks.", "transformer.")) for k in loaded):
        raise CheckpointError(f"{source}: none of its {tower} blocks match this model's tower")
    fresh = sorted(set(expected) - set(loaded))
    dropped = sorted(set(part) - set(expected))
    layer.set_state_dict({k: paddle.to_tensor(v).astype(own[k].dtype) for k, v in loaded.items()})
    logger.info("%s tower initialised from %s: %d tensors%s%s", tower, source, len(loaded),
                f"; kept fresh: {fresh}" if fresh else "", f"; not used: {dropped}" if dropped else "")
