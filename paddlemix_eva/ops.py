"""Selection of optional compiled kernels (the FusedLayerNorm custom op of `external_ops/`)."""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Type

import paddle.nn as nn

logger = logging.getLogger(__name__)

#: Set to 1 to always use `paddle.nn.LayerNorm`, even where the fused op is installed.
DISABLE_FUSED_LN_ENV = "PADDLEMIX_EVA_DISABLE_FUSED_LN"


@lru_cache(maxsize=None)
def fused_layer_norm_class() -> Type[nn.Layer]:
    """The LayerNorm class the shared blocks build: the fused op when it is importable, else Paddle's own."""
    if os.environ.get(DISABLE_FUSED_LN_ENV, "0") not in ("", "0", "false", "False"):
        logger.info("LayerNorm: paddle.nn.LayerNorm (%s is set)", DISABLE_FUSED_LN_ENV)
        return nn.LayerNorm
    try:
        from paddlemix_eva_ops import FusedLayerNorm  # type: ignore  # built from external_ops/
    except ImportError:
        logger.debug("LayerNorm: paddle.nn.LayerNorm (custom op paddlemix_eva_ops is not installed)")
        return nn.LayerNorm
    logger.info("LayerNorm: FusedLayerNorm custom op")
    return FusedLayerNorm
