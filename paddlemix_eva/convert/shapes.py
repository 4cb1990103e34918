"""Architecture fields read from a (Paddle-layout) state dict's tensor shapes, shared by every family's
converter: required tensors, block counts and MLP ratios."""
from __future__ import annotations

import re
from typing import Dict

import numpy as np

from paddlemix_eva.utils.checkpoint import CheckpointError

StateDict = Dict[str, np.ndarray]


def require_tensor(state: StateDict, key: str, source: str) -> np.ndarray:
    if key not in state:
        raise CheckpointError(
            f"{source}: cannot infer the architecture, key {key!r} is missing (found e.g. {sorted(state)[:6]})"
        )
    return state[key]


def count_blocks(state: StateDict, pattern: str, source: str) -> int:
    """1 + the largest block index captured by `pattern` (e.g. r"blocks\\.(\\d+)\\.") among the keys."""
    ids = [int(m.group(1)) for k in state if (m := re.match(pattern, k))]
    if not ids:
        raise CheckpointError(f"{source}: cannot infer the architecture, no key matches {pattern!r}")
    return 1 + max(ids)


def mlp_ratio_for(hidden: int, width: int) -> float:
    """The `mlp_ratio` whose int(width * ratio) gives back `hidden` (hidden / width can round down by one)."""
    ratio = hidden / width
    return ratio if int(width * ratio) == hidden else (hidden + 0.5) / width
