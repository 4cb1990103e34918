"""Parameter groups for AdamW: which parameters get weight decay, and per-group learning-rate scales."""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

import paddle.nn as nn


def no_weight_decay_names(model: nn.Layer, extra: Iterable[str] = ()) -> set:
    """Names the model exempts (`model.no_weight_decay()`: position tables, cls/mask tokens, logit scale) plus
    `extra`. Names may be given relative to the model or to a sub-model ending in that name."""
    names = set(extra)
    hook = getattr(model, "no_weight_decay", None)
    if callable(hook):
        names.update(hook())
    return names


def decays(name: str, param, exempt: set) -> bool:
    """Weight decay only on matrices / kernels: never on 1-D parameters (biases, norms, scales) or exempt names."""
    if param.ndim <= 1 or name.endswith(".bias"):
        return False
    return not any(name == n or name.endswith("." + n) for n in exempt)


def param_groups(
    model: nn.Layer,
    weight_decay: float,
    lr_scale: Optional[Callable[[str], float]] = None,
    extra_no_decay: Iterable[str] = (),
) -> List[Dict]:
    """Groups for Paddle optimizers: trainable parameters split by (decay?, lr scale); `learning_rate` in a group is
    a multiplier of the scheduled rate. Frozen parameters (stop_gradient) are left out."""
    exempt = no_weight_decay_names(model, extra_no_decay)
    groups: Dict[tuple, Dict] = {}
    for name, param in model.named_parameters():
        if param.stop_gradient:
            continue
        decay = decays(name, param, exempt)
        scale = lr_scale(name) if lr_scale is not None else 1.0
        key = (decay, scale)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                           "learning_rate": scale}
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return list(groups.values())
