"""LARS (layer-wise adaptive rate scaling) as MAE's linear probing uses it, as a Paddle optimizer.

Update of a parameter p with gradient g, learning rate lr, momentum m and trust coefficient eta:
    g' = g + wd * p
    q  = eta * ||p|| / ||g'||   if both norms are positive, else 1
    v  = m * v + q * g'
    p  = p - lr * v
Weight decay and the trust ratio apply only to parameters with more than one dimension (biases take plain
momentum SGD steps). Paddle's own `LarsMomentumOptimizer` differs in where lr enters the momentum buffer and in
the norm it divides by, so it is not used.
"""
from __future__ import annotations

from typing import Optional, Sequence

import paddle
from paddle.optimizer import Optimizer


class LARS(Optimizer):
    """Momentum SGD with per-tensor trust ratios; `learning_rate` may be a float or an `LRScheduler`, and per-
    parameter `optimize_attr["learning_rate"]` multipliers apply as in every Paddle optimizer."""

    _velocity_name = "velocity"

    def __init__(
        self,
        learning_rate,
        parameters: Sequence[paddle.Tensor],
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
        weight_decay: float = 0.0,
        grad_clip: Optional[paddle.nn.ClipGradBase] = None,
        name: Optional[str] = None,
    ):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS momentum must be in [0, 1), got {momentum}")
        if trust_coefficient <= 0:
            raise ValueError(f"LARS trust_coefficient must be positive, got {trust_coefficient}")
        super().__init__(learning_rate=learning_rate, parameters=list(parameters), weight_decay=None,
                         grad_clip=grad_clip, name=name)
        self.type = "lars"
        self._momentum = float(momentum)
        self._trust_coefficient = float(trust_coefficient)
        self._lars_weight_decay = float(weight_decay)

    def _create_accumulators(self, block, parameters):
        for param in parameters:
            if param.name not in self._accumulators.get(self._velocity_name, {}):
                self._add_accumulator(self._velocity_name, param)

    def _scaled_gradient(self, param: paddle.Tensor, grad: paddle.Tensor) -> paddle.Tensor:
        """q * g' for matrices and kernels, g for vectors."""
        if param.ndim <= 1:
            return grad
        update = grad + self._lars_weight_decay * param if self._lars_weight_decay else grad
        param_norm = paddle.linalg.norm(param)
        update_norm = paddle.linalg.norm(update)
        both_positive = paddle.logical_and(param_norm > 0, update_norm > 0)
        trust = paddle.where(both_positive, self._trust_coefficient * param_norm / update_norm,
                             paddle.ones_like(param_norm))
        return update * trust

    def _append_optimize_op(self, block, param_and_grad):
        param, grad = param_and_grad
        velocity = self._get_accumulator(self._velocity_name, param)
        lr = self._create_param_lr(param_and_grad)
        with paddle.no_grad():
            new_velocity = velocity * self._momentum + self._scaled_gradient(param, grad.astype(param.dtype))
            paddle.assign(new_velocity, velocity)
            paddle.assign(param - lr.astype(param.dtype) * new_velocity, param)
        return None
