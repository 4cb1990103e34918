"""LayerNorm construction: the fused custom op where it is installed, Paddle's LayerNorm otherwise."""
from __future__ import annotations

import logging
import os
from functools import lru_cache, partial
from typing import Callable, Type

import paddle.nn as nn

LayerFactory = Callable[[int], nn.Layer]

logger = logging.getLogger(__name__)


def make_layer_norm(epsilon: float = 1e-6) -> LayerFactory:
    """LayerNorm factory. Vision towers use eps 1e-6 (Paddle's default is 1e-5, the CLIP text value)."""
    return partial(fused_layer_norm_class(), epsilon=epsilon)


#: Set to 1 to always use `paddle.nn.LayerNorm`, even where the fused op is installed.
DISABLE_FUSED_LN_ENV = "PADDLEMIX_EVA_DISABLE_FUSED_LN"


@lru_cache(maxsize=None)
def fused_layer_norm_class() -> Type[nn.Layer]:
    """The LayerNorm class the shared blocks build: the fused op when it is importable, else Paddle's own.

    Measured on CPU (benchmarks/bench_layernorm.py, README) the fused forward + backward is 3-12x faster than
    `paddle.nn.LayerNorm` and the forward alone on par, so the op is the default wherever it is installed
    (`make ops`). Inputs it has no kernel for (static-graph exports, a device it was not built for) go to Paddle's
    kernel inside `FusedLayerNorm` itself; float16 on CPU, which Paddle has no kernel for either, runs in float32.
    """
    if os.environ.get(DISABLE_FUSED_LN_ENV, "0") not in ("", "0", "false", "False"):
        logger.info("LayerNorm: paddle.nn.LayerNorm (%s is set)", DISABLE_FUSED_LN_ENV)
        return nn.LayerNorm
    try:
        from paddlemix_eva_ops import FusedLayerNorm  # type: ignore  # built from external_ops/
    except ImportError:
        logger.info("LayerNorm: paddle.nn.LayerNorm (the FusedLayerNorm op is not installed; `make ops` builds it)")
        return nn.LayerNorm
    except Exception as err:  # e.g. built against another Paddle: the library fails to load
        logger.warning("LayerNorm: paddle.nn.LayerNorm (the FusedLayerNorm op failed to load: %s; rebuild it with "
                       "`make ops`)", err)
        return nn.LayerNorm
    logger.info("LayerNorm: FusedLayerNorm custom op (%s=1 selects paddle.nn.LayerNorm)", DISABLE_FUSED_LN_ENV)
    return FusedLayerNorm
