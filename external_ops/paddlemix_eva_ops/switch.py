"""The on/off switch of the fused CPU ops (linear, SwiGLU, RoPE): one module-level setting, defaulting to the
environment, so a whole model can be switched to the plain Paddle expressions without touching its code.

    PADDLEMIX_EVA_DISABLE_FUSED_CPU_OPS=1           # default for the process
    set_fused_cpu_ops_enabled(False)                # overrides it; None returns to the environment's value
    linear(x, w, b, use_fused=False)                # per call: True / False beat both, None follows them
"""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["DISABLE_FUSED_CPU_OPS_ENV", "fused_cpu_ops_enabled", "set_fused_cpu_ops_enabled", "resolve"]

#: Set to 1 to make the fused CPU ops fall back to the plain Paddle expressions by default.
DISABLE_FUSED_CPU_OPS_ENV = "PADDLEMIX_EVA_DISABLE_FUSED_CPU_OPS"

_override: Optional[bool] = None


def set_fused_cpu_ops_enabled(enabled: Optional[bool]) -> None:
    """Turn the fused CPU ops on or off for the process; None goes back to the environment variable."""
    global _override
    _override = None if enabled is None else bool(enabled)


def fused_cpu_ops_enabled() -> bool:
    """The setting calls with `use_fused=None` follow (read from the environment on each call unless set)."""
    if _override is not None:
        return _override
    return os.environ.get(DISABLE_FUSED_CPU_OPS_ENV, "0") in ("", "0", "false", "False")


def resolve(use_fused: Optional[bool]) -> bool:
    """A call's explicit choice, else the process setting."""
    return fused_cpu_ops_enabled() if use_fused is None else bool(use_fused)
