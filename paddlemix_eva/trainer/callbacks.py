"""Trainer callbacks shared by the recipes: VisualDL logging that works, gradient-norm measurement, the guard
against non-finite losses."""
from __future__ import annotations

import logging
import math
from typing import List, Optional

import paddle
import paddle.distributed as dist
from paddlenlp.trainer import TrainerCallback
from paddlenlp.trainer.integrations import VisualDLCallback

from paddlemix_eva.utils import compat
from paddlemix_eva.utils.errors import TrainingStopped

logger = logging.getLogger(__name__)


class SafeVisualDLCallback(VisualDLCallback):
    """PaddleNLP's VisualDL logger, with hyper-parameters that protobuf accepts: booleans are sent as 0/1
    (recent protobuf refuses a bool in VisualDL's int field and PaddleNLP 2.8.1 would crash at train start)."""

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.vdl_writer is None:
            self._init_summary_writer(args)
        if self.vdl_writer is None:
            return
        self.vdl_writer.add_text("args", args.to_json_string())
        hparams = {k: int(v) if isinstance(v, bool) else v for k, v in args.to_sanitized_dict().items()}
        if hasattr(self.vdl_writer, "add_hparams"):
            self.vdl_writer.add_hparams(hparams, metrics_list=[])





class GradNormMonitor(TrainerCallback):
    """Global L2 norm of the gradients the optimizer is about to apply (after the data-parallel all-reduce,
    before clipping, unscaled under fp16), for the logs."""

    def __init__(self):
        self.value: Optional[float] = None

    def on_optimizer_begin(self, args, state, control, scaler=None, model=None, optimizer=None, **kwargs):
        sharded = compat.sharded_parameters(optimizer)
        if sharded is not None:  # each sharding rank owns the reduced gradients of its shard
            params, group = sharded
        else:
            params, group = [p for p in model.parameters() if not p.stop_gradient], None
        total = paddle.zeros([1], dtype="float32")
        for param in params:
            if param.grad is not None:
                total += param.grad.astype("float32").square().sum()
        if group is not None:
            dist.all_reduce(total, group=group)
        norm = float(total.sqrt())
        scale = compat.loss_scale(scaler)
        if scale is not None:  # fp16 loss scaling: report the true gradient norm
            norm /= scale
        self.value = norm


class NonFiniteGuard(TrainerCallback):
    """Skips every optimizer step whose loss (any micro-batch, any rank) or gradient norm is not finite, and stops
    the run after `patience` such steps in a row, so a diverged run neither keeps training on garbage nor saves it.

    The trainer asks `loss_is_finite` before each backward; the answer is agreed across data-parallel ranks, so
    all of them skip the same backward and none waits in a gradient all-reduce. A skipped step's gradients are
    dropped (set to None), which Paddle's optimizers treat as "no update" for every parameter; the learning-rate
    schedule moves on."""

    def __init__(self, grad_norm: GradNormMonitor, patience: int = 3):
        self.grad_norm, self.patience = grad_norm, int(patience)
        self.poisoned = False
        self.skipped_steps: List[int] = []  # global steps (1-based) skipped in the current run of bad steps

    def loss_is_finite(self, loss: paddle.Tensor) -> bool:
        finite = paddle.isfinite(loss.detach().astype("float32")).all().astype("float32").reshape([1])
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if float(finite) < 1.0:
            self.poisoned = True
            return False
        return True

    def on_optimizer_begin(self, args, state, control, optimizer=None, **kwargs):
        norm = self.grad_norm.value
        if not self.poisoned and (norm is None or math.isfinite(norm)):
            self.skipped_steps = []
            return
        step = state.global_step + 1
        self.skipped_steps.append(step)
        reason = "loss" if self.poisoned else f"gradient norm ({norm})"
        logger.warning("step %d: non-finite %s; the update is skipped (%d in a row, the run stops at %d)", step,
                       reason, len(self.skipped_steps), self.patience)
        if len(self.skipped_steps) >= self.patience:
            raise TrainingStopped(
                f"training stopped at step {step}: the {reason} was not finite in {len(self.skipped_steps)} steps in "
                f"a row (steps {self.skipped_steps}); nothing was saved from them. Lower --learning_rate, raise "
                "--warmup_steps or clip gradients (--max_grad_norm), then resume from the last checkpoint "
                "(--resume_from_checkpoint)"
            )
        for inner in compat.inner_optimizers(optimizer):
            if hasattr(inner, "clear_grad"):
                inner.clear_grad(set_to_zero=False)
                break

    def on_optimizer_end(self, args, state, control, **kwargs):
        self.poisoned = False
