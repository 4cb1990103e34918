"""Trainer callbacks shared by the recipes: VisualDL logging that works, gradient-norm measurement."""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.distributed as dist
from paddlenlp.trainer import TrainerCallback
from paddlenlp.trainer.integrations import VisualDLCallback


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


def optimizer_wrappers(optimizer):
    """The optimizer and the optimizers fleet's hybrid-parallel / sharding wrappers hold inside it."""
    while optimizer is not None:
        yield optimizer
        optimizer = getattr(optimizer, "_inner_opt", None)


class GradNormMonitor(TrainerCallback):
    """Global L2 norm of the gradients the optimizer is about to apply (after the data-parallel all-reduce,
    before clipping, unscaled under fp16), for the logs."""

    def __init__(self):
        self.value: Optional[float] = None

    def on_optimizer_begin(self, args, state, control, scaler=None, model=None, optimizer=None, **kwargs):
        sharding = next((o for o in optimizer_wrappers(optimizer) if hasattr(o, "_rank2params")), None)
        if sharding is not None:  # each sharding rank owns the reduced gradients of its shard
            params = sharding._rank2params[sharding._sharding_rank]
        else:
            params = [p for p in model.parameters() if not p.stop_gradient]
        total = paddle.zeros([1], dtype="float32")
        for param in params:
            if param.grad is not None:
                total += param.grad.astype("float32").square().sum()
        if sharding is not None:
            dist.all_reduce(total, group=sharding._hcg.get_sharding_parallel_group())
        norm = float(total.sqrt())
        scale = getattr(scaler, "_scale", None) if scaler is not None and getattr(scaler, "_enable", True) else None
        if scale is not None:  # fp16 loss scaling: report the true gradient norm
            norm /= float(scale)
        self.value = norm
