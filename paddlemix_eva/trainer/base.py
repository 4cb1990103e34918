"""What every paddlemix-eva trainer adds to PaddleNLP's `Trainer`: parameter groups and run checks."""
from __future__ import annotations

import logging

from paddlenlp.trainer import Trainer
from paddlenlp.trainer.integrations import VisualDLCallback

from .optim import param_groups

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


class EVATrainer(Trainer):
    """PaddleNLP `Trainer` with weight decay only where upstream applies it (see `optim.param_groups`).

    Subclasses override `compute_loss` and, where the recipe asks, `lr_scale_for` (layer-wise decay)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.pop_callback(VisualDLCallback) is not None:
            self.add_callback(SafeVisualDLCallback())

    def lr_scale_for(self, name: str) -> float:
        return 1.0

    def create_optimizer(self, lr_scheduler=None):
        if self.optimizer is None and self.optimizer_grouped_parameters is None:
            self.optimizer_grouped_parameters = param_groups(
                self.model, self.args.weight_decay, lr_scale=self.lr_scale_for
            )
            for group in self.optimizer_grouped_parameters:
                logger.debug("param group wd=%s lr x%s: %d tensors", group["weight_decay"], group["learning_rate"],
                             len(group["params"]))
        return super().create_optimizer(lr_scheduler)
