"""Convert official EVA / timm / open_clip / PaddleMIX checkpoints into a directory `from_pretrained` loads.

    from paddlemix_eva.convert import convert_checkpoint
    convert_checkpoint("eva02_Ti_pt_in21k_ft_in1k_p14.pt", "official", out="./eva02_ti")

The command line equivalent is `paddlemix-eva convert SRC --format official --out DIR`.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Union

from paddlemix_eva.convert.keymaps import (
    FORMATS,
    clip_to_paddlemix,
    detect_format,
    is_clip_state_dict,
    proven_format,
    vision_to_paddlemix,
)
from paddlemix_eva.utils.checkpoint import CheckpointError, StateDict, read_state_dict, save_paddle_state_dict

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "convert_checkpoint", "convert_state_dict"]


#: The families' converters, tried in this order; the first whose `detect(state)` says the checkpoint is its own
#: converts it. Each module (`models/<family>/convert.py`) defines `detect(state) -> bool` and
#: `convert(state, fmt, source) -> (model_class, config, state)` with the state in the family's Paddle layout; a
#: family with a patch-14 -> 16 transform also defines `p14_to_p16(state, config) -> config`. EVA-02 comes last:
#: its plain-ViT layout is what remains.
FAMILY_CONVERTERS = (
    "paddlemix_eva.models.mae.convert",
    "paddlemix_eva.models.evovit.convert",
    "paddlemix_eva.models.evaclip.convert",
    "paddlemix_eva.models.eva02.convert",
)


def family_converter(state: StateDict, source: str = "checkpoint"):
    """The converter module of the family a checkpoint belongs to."""
    import importlib

    for name in FAMILY_CONVERTERS:
        module = importlib.import_module(name)
        if module.detect(state):
            return module
    raise CheckpointError(f"{source}: no model family recognises this checkpoint ({len(state)} tensors, keys such as "
                          f"{sorted(state)[:3]})")


def check_format(state: StateDict, fmt: str, source: str = "checkpoint") -> None:
    """Refuse a --format the keys contradict (the EVA-02 / EVA-CLIP layouts tell official, timm, open_clip and
    PaddleMIX apart)."""
    guessed = detect_format(state)
    if fmt == "paddlemix" and guessed != "paddlemix":
        raise CheckpointError(f"{source} looks like a {guessed!r} checkpoint, not PaddleMIX; use --format {guessed}")
    proven = proven_format(state)
    if proven is not None and proven != fmt:
        raise CheckpointError(f"{source} is a {proven!r} checkpoint (its keys say so), not {fmt!r}; use --format "
                              f"{proven}")


def convert_mapped(state: StateDict, fmt: str, source: str, to_paddlemix, infer):
    """The EVA-02 / EVA-CLIP plug-ins' `convert`: check the format, map the keys to PaddleMIX's
    (`to_paddlemix(state, fmt)`), read the architecture from the shapes (`infer(state, source)`)."""
    check_format(state, fmt, source)
    state = to_paddlemix(state, fmt)
    model_class, config = infer(state, source)
    return model_class, config, state


def convert_state_dict(state: StateDict, fmt: str, source: str = "checkpoint") -> StateDict:
    """Map an EVA-02 / EVA-CLIP checkpoint's keys and layouts to PaddleMIX names (no architecture checks)."""
    check_format(state, fmt, source)
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

    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; expected one of {FORMATS}")
    source = src if isinstance(src, str) else "state dict"
    state = read_state_dict(src) if isinstance(src, str) else dict(src)
    family = family_converter(state, source)
    model_class, config, state = family.convert(state, fmt, source)
    if model is not None:
        entry = zoo.get_entry(model)
        model_class = entry.load_class()
        config = zoo.build_config(entry, model_class.config_class)
    if p14to16:
        if not hasattr(family, "p14_to_p16"):
            raise ValueError(f"--p14to16 applies to EVA-02 models; {source} is a {model_class.__name__} checkpoint")
        config = family.p14_to_p16(state, config)
    state = model_class.adapt_state_dict(state, config, source)
    state = model_class.check_state_dict(state, model_class._expected_shapes(config), source, strict=True)
    os.makedirs(out, exist_ok=True)
    config.architectures = [model_class.__name__]
    config.save_pretrained(out)
    save_paddle_state_dict(state, os.path.join(out, "model_state.pdparams"))
    logger.info("wrote %s (%s, %d tensors) to %s", model_class.__name__, fmt, len(state), out)
    return out
