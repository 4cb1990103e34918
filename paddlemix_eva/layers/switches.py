"""The kernel switches of the shared blocks, as explicit API: each is on by default where its kernel exists,
`set(False)` turns it off for the process (`set(None)` returns to the default), and an environment variable gives
the default (read at each use, so a test or a benchmark may also flip it between model builds).

    from paddlemix_eva.layers import switches
    switches.FUSED_LAYER_NORM.set(False)               # blocks built from now on use paddle.nn.LayerNorm
    with switches.FUSED_CPU_OPS.overridden(False):     # plain Paddle linear / SwiGLU / RoPE inside the block
        model(x)

| switch | kernels | default off with |
|---|---|---|
| FUSED_LAYER_NORM | FusedLayerNorm custom op (read when a model is built) | PADDLEMIX_EVA_DISABLE_FUSED_LN=1 |
| CPU_FUSED_ATTENTION | Paddle's self_dp_attention (AVX-512, inference) | PADDLEMIX_EVA_DISABLE_CPU_FUSED_ATTENTION=1 |
| FUSED_CPU_OPS | external_ops' oneDNN linear (+ bias + residual), SwiGLU and RoPE kernels | PADDLEMIX_EVA_DISABLE_FUSED_CPU_OPS=1 |
"""  # noqa: E501 (a Markdown table row cannot be wrapped)
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Optional

logger = logging.getLogger(__name__)

_FALSE = ("", "0", "false", "False")


class Switch:
    """A process-wide on/off setting whose default comes from `PADDLEMIX_EVA_DISABLE_*` environment variables."""

    def __init__(self, name: str, disable_env: str):
        self.name = name
        self.disable_env = disable_env
        self._override: Optional[bool] = None

    def set(self, enabled: Optional[bool]) -> None:
        """True / False for the process; None: back to the environment's default."""
        self._override = None if enabled is None else bool(enabled)
        logger.debug("%s: %s", self.name, "default" if enabled is None else ("on" if enabled else "off"))

    def enabled(self) -> bool:
        if self._override is not None:
            return self._override
        return os.environ.get(self.disable_env, "0") in _FALSE

    @contextlib.contextmanager
    def overridden(self, enabled: Optional[bool]) -> Iterator[None]:
        saved = self._override
        self.set(enabled)
        try:
            yield
        finally:
            self._override = saved

    def __repr__(self) -> str:
        source = "environment" if self._override is None else "set"
        return f"Switch({self.name!r}, enabled={self.enabled()}, from {source}; default off: {self.disable_env}=1)"


FUSED_LAYER_NORM = Switch("fused LayerNorm", "PADDLEMIX_EVA_DISABLE_FUSED_LN")
CPU_FUSED_ATTENTION = Switch("fused CPU attention", "PADDLEMIX_EVA_DISABLE_CPU_FUSED_ATTENTION")
FUSED_CPU_OPS = Switch("fused CPU linear / SwiGLU / RoPE", "PADDLEMIX_EVA_DISABLE_FUSED_CPU_OPS")
ALL = (FUSED_LAYER_NORM, CPU_FUSED_ATTENTION, FUSED_CPU_OPS)
