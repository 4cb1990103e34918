"""Which parameters get weight decay, and per-parameter learning-rate scales.

Expressed per parameter (a decay predicate on `param.name`, `optimize_attr["learning_rate"]` multipliers) rather
than as optimizer parameter groups, because Paddle's sharded optimizers accept only a flat parameter list.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional, Set

import paddle
import paddle.nn as nn


def no_weight_decay_names(model: nn.Layer, extra: Iterable[str] = ()) -> Set[str]:
    """Names the model exempts (`model.no_weight_decay()`: position tables, cls/mask tokens, logit scale) plus
    `extra`; a name also matches a parameter of a sub-model that ends in it."""
    names = set(extra)
    hook = getattr(model, "no_weight_decay", None)
    if callable(hook):
        names.update(hook())
    return names


def decays(name: str, param, exempt: Set[str]) -> bool:
    """Weight decay only on matrices / kernels: never on 1-D parameters (biases, norms, scales) or exempt names."""
    if param.ndim <= 1 or name.endswith(".bias"):
        return False
    return not any(name == n or name.endswith("." + n) for n in exempt)


def decayed_parameter_names(model: nn.Layer, extra_no_decay: Iterable[str] = ()) -> Set[str]:
    """`param.name`s (the optimizer's identifiers) of the trainable parameters that get weight decay."""
    exempt = no_weight_decay_names(model, extra_no_decay)
    return {p.name for n, p in model.named_parameters() if not p.stop_gradient and decays(n, p, exempt)}


def apply_lr_scales(model: nn.Layer, lr_scale: Optional[Callable[[str], float]]) -> None:
    """Set every parameter's learning-rate multiplier (Paddle optimizers multiply the scheduled rate by it)."""
    for name, param in model.named_parameters():
        param.optimize_attr["learning_rate"] = float(lr_scale(name)) if lr_scale is not None else 1.0


class PerParameterDecay:
    """Mixed into a Paddle optimizer: the weight-decay coefficient of each parameter read from `decay_of`
    (`param.name` -> coefficient at the start of the run), scaled by the ratio of the optimizer's current global
    coefficient (what `WeightDecaySchedule` sets) to its initial one. What per-tower decay (`--visual_wd`,
    `--text_wd`) needs on a flat parameter list, which Paddle's sharded optimizers require."""

    _decay_attr = "_weight_decay"

    def __init__(self, *args, decay_of: Dict[str, float], **kwargs):
        super().__init__(*args, **kwargs)
        self._decay_of = dict(decay_of)
        self._initial_decay = float(getattr(self, self._decay_attr) or 0.0)

    def _append_optimize_op(self, block, param_and_grad):
        if isinstance(param_and_grad, dict):  # a parameter group keeps its own coefficient
            return super()._append_optimize_op(block, param_and_grad)
        current = getattr(self, self._decay_attr)
        factor = float(current) / self._initial_decay if self._initial_decay > 0 else 1.0
        setattr(self, self._decay_attr, self._decay_of.get(param_and_grad[0].name, 0.0) * factor)
        try:
            return super()._append_optimize_op(block, param_and_grad)
        finally:
            setattr(self, self._decay_attr, current)


class PerParameterDecayAdamW(PerParameterDecay, paddle.optimizer.AdamW):
    """AdamW (decoupled decay, scaled by each parameter's learning rate) with a coefficient per parameter."""


class PerParameterDecayLamb(PerParameterDecay, paddle.optimizer.Lamb):
    """Paddle's LAMB (layer-wise trust ratio; decay inside the update) with a coefficient per parameter."""

    _decay_attr = "_lamb_weight_decay"
