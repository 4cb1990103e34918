"""LayerNorm construction: the fused custom op where it is installed, Paddle's LayerNorm otherwise."""
from __future__ import annotations

import logging
from functools import lru_cache, partial
from typing import Callable, Optional, Type

import paddle.nn as nn

from paddlemix_eva.layers import switches

LayerFactory = Callable[[int], nn.Layer]

logger = logging.getLogger(__name__)


def make_layer_norm(epsilon: float = 1e-6) -> LayerFactory:
    """LayerNorm factory. Vision towers use eps 1e-6 (Paddle's default is 1e-5, the CLIP text value)."""
    return partial(fused_layer_norm_class(), epsilon=epsilon)


#: Set to 1 to build `paddle.nn.LayerNorm` even where the fused op is installed (the default of
#: `switches.FUSED_LAYER_NORM`).
DISABLE_FUSED_LN_ENV = switches.FUSED_LAYER_NORM.disable_env


def fused_layer_norm_class() -> Type[nn.Layer]:
    """The LayerNorm class the shared blocks build: the fused op when the switch (`switches.FUSED_LAYER_NORM`) is
    on and the op is installed, else Paddle's own.

    Measured on CPU (benchmarks/bench_layernorm.py, docs/performance.md) the fused forward + backward is 3-12x
    faster than `paddle.nn.LayerNorm` and the forward alone on par, so the op is the default wherever it is
    installed (`make ops`). Inputs it has no kernel for (static-graph exports, a device it was not built for) go to
    Paddle's kernel inside `FusedLayerNorm` itself; float16 on CPU, which Paddle has no kernel for either, runs in
    float32.
    """
    chosen = _installed_fused_layer_norm() if switches.FUSED_LAYER_NORM.enabled() else None
    choice = chosen or nn.LayerNorm
    if choice is not _last_choice[0]:
        _last_choice[0] = choice
        if chosen is not None:
            logger.info("LayerNorm: FusedLayerNorm custom op (switches.FUSED_LAYER_NORM, %s=1 turns it off)",
                        DISABLE_FUSED_LN_ENV)
        elif not switches.FUSED_LAYER_NORM.enabled():
            logger.info("LayerNorm: paddle.nn.LayerNorm (switches.FUSED_LAYER_NORM is off)")
    return choice


_last_choice: list = [None]


@lru_cache(maxsize=None)
def _installed_fused_layer_norm() -> Optional[Type[nn.Layer]]:
    try:
        from paddlemix_eva_ops import FusedLayerNorm  # type: ignore  # built from external_ops/
    except ImportError:
        logger.info("LayerNorm: paddle.nn.LayerNorm (the FusedLayerNorm op is not installed; `make ops` builds it)")
        return None
    except Exception as err:  # e.g. built against another Paddle: the library fails to load
        logger.warning("LayerNorm: paddle.nn.LayerNorm (the FusedLayerNorm op failed to load: %s; rebuild it with "
                       "`make ops`)", err)
        return None
    return FusedLayerNorm
