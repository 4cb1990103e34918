"""Convert official EVA / timm / open_clip / PaddleMIX checkpoints into a directory `from_pretrained` loads.

    from paddlemix_eva.convert import convert_checkpoint
    convert_checkpoint("eva02_Ti_pt_in21k_ft_in1k_p14.pt", "official", out="./eva02_ti")

The command line equivalent is `paddlemix-eva convert SRC --format official --out DIR`.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Union

from paddlemix_eva.utils.checkpoint import CheckpointError, StateDict, read_state_dict, save_paddle_state_dict
from paddlemix_eva.convert.keymaps import (
    FORMATS,
    clip_to_paddlemix,
    detect_format,
    is_clip_state_dict,
    proven_format,
    vision_to_paddlemix,
)

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "convert_checkpoint", "convert_state_dict"]


#: Converters of the other model families, tried before the EVA-02 / EVA-CLIP rules. Each module defines
#: `detect(state) -> bool` (is this checkpoint mine?) and `convert(state, fmt, source) -> (model_class, config,
#: state)` with the state in the family's Paddle layout.
FAMILY_CONVERTERS = ("paddlemix_eva.models.mae.convert", "paddlemix_eva.models.evovit.convert")


def _family_converter(state: StateDict):
    import importlib

    for name in FAMILY_CONVERTERS:
        module = importlib.import_module(name)
        if module.detect(state):
            return module
    return None


def convert_state_dict(state: StateDict, fmt: str, source: str = "checkpoint") -> StateDict:
    """Map a checkpoint's keys and layouts to PaddleMIX names (no architecture checks)."""
    guessed = detect_format(state)
    if fmt == "paddlemix" and guessed != "paddlemix":
        raise CheckpointError(f"{source} looks like a {guessed!r} checkpoint, not PaddleMIX; use --format {guessed}")
    proven = proven_format(state)
    if proven is not None and proven != fmt:
        raise CheckpointError(f"{source} is a {proven!r} checkpoint (its keys say so), not {fmt!r}; use --format "
                              f"{proven}")
    if is_clip_state_dict(state):
        return clip_to_paddlemix(state, fmt)
    return vision_to_paddlemix(state, fmt)


def convert_checkpoint(
    src: Union[str, StateDict],
    fmt: str,
    out: str,
    model: Optional[str] = None,
    p14to16: bool = False,
) -> str:
    """Convert `src` (a weight file or an in-memory state dict) and write `config.json` + `model_state.pdparams`.

    The architecture comes from the zoo entry `model` when given (and the weights must fit it exactly), else it
    is inferred from tensor shapes. `p14to16` additionally turns a patch-14 model into its patch-16 variant.
    """
    from paddlemix_eva import zoo
    from paddlemix_eva.models.eva02.convert import infer_eva02, p14_to_p16
    from paddlemix_eva.models.eva02 import EVA02VisionTransformer, EVA02VisionTransformerForMIM
    from paddlemix_eva.models.evaclip.convert import infer_evaclip

    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; expected one of {FORMATS}")
    source = src if isinstance(src, str) else "state dict"
    state = read_state_dict(src) if isinstance(src, str) else dict(src)
    family = _family_converter(state)
    if family is not None:
        model_class, config, state = family.convert(state, fmt, source)
    else:
        state = convert_state_dict(state, fmt, source)
    if model is not None:
        entry = zoo.get_entry(model)
        model_class = entry.load_class()
        config = zoo.build_config(entry, model_class.config_class)
    elif family is not None:
        pass
    elif any(k.startswith("visual.") for k in state):
        model_class, config = infer_evaclip(state, source)
    else:
        model_class, config = infer_eva02(state, source)
    if p14to16:
        if model_class is not EVA02VisionTransformer and model_class is not EVA02VisionTransformerForMIM:
            raise ValueError("--p14to16 applies to EVA-02 models, not to EVA-CLIP checkpoints")
        config = p14_to_p16(state, config)
    state = model_class.adapt_state_dict(state, config, source)
    state = model_class.check_state_dict(state, model_class._expected_shapes(config), source, strict=True)
    os.makedirs(out, exist_ok=True)
    config.architectures = [model_class.__name__]
    config.save_pretrained(out)
    save_paddle_state_dict(state, os.path.join(out, "model_state.pdparams"))
    logger.info("wrote %s (%s, %d tensors) to %s", model_class.__name__, fmt, len(state), out)
    return out
