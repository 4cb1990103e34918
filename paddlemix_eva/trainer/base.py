"""What every paddlemix-eva trainer adds to PaddleNLP's `Trainer`: parameter groups and run checks."""
from __future__ import annotations

import logging
import os
import shutil

from paddlenlp.trainer import Trainer
from paddlenlp.trainer.integrations import VisualDLCallback

import paddle
import paddle.nn as nn

from .optim import apply_lr_scales, decayed_parameter_names

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Same seed in every process before the model is built, so its initial weights do not depend on the
    launch (data parallel then starts all ranks from rank 0's identical copy anyway)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def check_device_arguments(args) -> None:
    """Refuse flags this device cannot honour instead of letting Paddle ignore them silently: Paddle's AMP
    (autocast and loss scaling) and fleet's tensor-parallel layers work on CUDA only."""
    if paddle.is_compiled_with_cuda():
        return
    if args.fp16 or args.bf16:
        raise ValueError(
            "--fp16/--bf16: Paddle's automatic mixed precision only runs on CUDA devices (on CPU it does nothing); "
            "drop the flag to train in float32 on this machine"
        )
    requested_tp = max(args.tensor_parallel_degree, getattr(args, "requested_tensor_parallel_degree", 1))
    if requested_tp > 1:
        raise ValueError(
            f"--tensor_parallel_degree {requested_tp} needs GPUs: fleet's tensor-parallel layers have no CPU kernels. "
            "On CPU use data parallel (--dp_degree) and/or --sharding stage1"
        )


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
    """PaddleNLP `Trainer` with weight decay only where upstream applies it (see `optim.decays`).

    Subclasses override `compute_loss` and, where the recipe asks, `lr_scale_for` (layer-wise decay)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.pop_callback(VisualDLCallback) is not None:
            self.add_callback(SafeVisualDLCallback())

    def _save_checkpoint(self, model, metrics=None):
        """Checkpoints are written atomically: every rank writes into `output_dir/.staging-checkpoint-N`, which
        becomes `checkpoint-N` by one rename once all files are complete. A run killed while saving leaves only
        the staging folder, which resuming never picks up (and the next save clears)."""
        final_root = self.args.output_dir
        name = f"checkpoint-{self.state.global_step}"
        staging_root = os.path.join(final_root, f".staging-{name}")
        if self.args.should_save and os.path.isdir(staging_root):
            shutil.rmtree(staging_root)
        self._barrier()
        self.args.output_dir = staging_root
        try:
            super()._save_checkpoint(model, metrics=metrics)
        finally:
            self.args.output_dir = final_root
        self._barrier()
        if self.args.should_save:
            target = os.path.join(final_root, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging_root, name), target)
            shutil.rmtree(staging_root, ignore_errors=True)
            if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(staging_root):
                self.state.best_model_checkpoint = target
            self._rotate_checkpoints(use_mtime=True, output_dir=final_root)
        self._barrier()

    def _barrier(self) -> None:
        if self.args.world_size > 1:
            paddle.distributed.barrier()

    def lr_scale_for(self, name: str) -> float:
        return 1.0

    def create_optimizer(self, lr_scheduler=None):
        """PaddleNLP's optimizer construction with upstream's decay set and per-parameter LR scales; frozen
        parameters (stop_gradient) are left out."""
        if self.optimizer is None:
            model = getattr(self.model, "_layers", self.model)
            decayed = decayed_parameter_names(model)
            apply_lr_scales(model, self.lr_scale_for)
            optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)
            if hasattr(optimizer_cls, "_create_master_weight") and self.args.fp16_opt_level == "O2":
                optimizer_kwargs["multi_precision"] = True
            max_norm = self.args.max_grad_norm
            self.optimizer = optimizer_cls(
                learning_rate=self.lr_scheduler if lr_scheduler is None else lr_scheduler,
                apply_decay_param_fun=lambda name: name in decayed,
                parameters=[p for p in model.parameters() if not p.stop_gradient],
                weight_decay=self.args.weight_decay,
                grad_clip=nn.ClipGradByGlobalNorm(max_norm) if max_norm > 0 else None,
                **optimizer_kwargs,
            )
            logger.info("optimizer %s: weight decay on %d of %d trainable tensors", optimizer_cls.__name__,
                        len(decayed), len(self.optimizer._parameter_list))
        return self.optimizer
