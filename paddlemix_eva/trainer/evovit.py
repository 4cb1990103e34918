"""Evo-ViT training with PaddleNLP's `Trainer`: the DeiT recipe for Evo-DeiT (no distillation) and the LeViT
recipe for Evo-LeViT (hard distillation from a RegNetY-160 teacher, adaptive gradient clipping), both with the
auxiliary cls-token loss and the layer-to-stage switch at 2/3 of training. The data pipeline, mixup / cutmix,
EMA and evaluation are the fine-tuning runner's (`trainer/finetune.py`)."""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Optional

import paddle
import paddle.nn.functional as F
from paddlenlp.trainer import TrainerCallback

from paddlemix_eva.trainer.base import effective_batch_size
from paddlemix_eva.trainer.finetune import (
    DeiTRecipeDataArguments,
    FinetuneArguments,
    FinetuneModelArguments,
    FinetuneTrainer,
    run_finetuning,
    soft_target_cross_entropy,
)
from paddlemix_eva.zoo import model_class_for

logger = logging.getLogger(__name__)

#: fraction of training after which selection becomes stage-wise (upstream: epoch 200 of 300)
SWITCH_FRACTION = 2.0 / 3.0
DISTILLATION_TYPES = ("none", "hard")


@dataclass
class EvoModelArguments(FinetuneModelArguments):
    model: str = field(default="paddlemix/EvoViT/evo_deit_small_patch16_224",
                       metadata={"help": "zoo name (architecture, trained from scratch) or model directory (weights)"})
    layer_decay: float = field(default=1.0, metadata={"help": "layer-wise learning-rate decay (the recipes: off)"})
    model_ema: bool = field(default=True, metadata={"help": "keep, evaluate and save an EMA of the weights"})
    model_ema_decay: float = field(default=0.99996, metadata={"help": "EMA decay per optimizer step"})
    teacher: Optional[str] = field(default=None, metadata={
        "help": "distillation teacher: zoo name or directory of any Paddle classifier "
                "(e.g. paddlemix/EvoViT/regnety_160)"})
    distillation_type: str = field(default="none", metadata={"help": "none | hard (the LeViT recipe)"})
    distillation_alpha: float = field(default=0.5, metadata={"help": "loss = (1 - alpha) base + alpha distillation"})
    switch_epoch: Optional[float] = field(default=None, metadata={
        "help": "epoch from which tokens are selected once per stage (default: 2/3 of the run's epochs)"})


@dataclass
class EvoDataArguments(DeiTRecipeDataArguments):
    """The DeiT recipe's data pipeline (Evo-LeViT uses the same)."""


@dataclass
class EvoTrainingArguments(FinetuneArguments):
    """Defaults of the Evo-DeiT recipe; the Evo-LeViT recipe changes weight decay (0.025) and `--agc_clip 0.01`."""

    blr: Optional[float] = field(default=None, metadata={
        "help": "base learning rate per 512 images: learning_rate = blr x global batch / 512 (recipes: 5e-4)"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate (overridden by --blr)"})
    warmup_lr: float = field(default=1e-6, metadata={"help": "learning rate at the start of the warmup"})
    min_lr: float = field(default=1e-5, metadata={"help": "final learning rate of the cosine schedule"})
    num_train_epochs: float = field(default=300, metadata={"help": "training epochs"})
    agc_clip: float = field(default=0.0, metadata={"help": "adaptive gradient clipping factor (0: off; LeViT 0.01)"})


# ------------------------------------------------------------------------------------------- losses
def hard_distillation_loss(student_logits: paddle.Tensor, teacher_logits: paddle.Tensor) -> paddle.Tensor:
    """Cross-entropy of the student against the teacher's argmax class (DeiT's `hard` distillation)."""
    labels = teacher_logits.argmax(axis=-1)
    return F.cross_entropy(student_logits.astype("float32"), labels)


def evo_loss(outputs, targets: paddle.Tensor, teacher_logits: Optional[paddle.Tensor] = None,
             alpha: float = 0.5) -> paddle.Tensor:
    """Training loss of the Evo heads.

    outputs: logits, or (mean head, cls head), or (mean head, cls head, mean dist head, cls dist head).
    base = mean of the soft-target cross-entropies of the class heads; with a teacher,
    distill = mean of the hard-distillation losses of the dist heads and loss = (1 - alpha) base + alpha distill.
    """
    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    heads, dist_heads = outputs[:2], outputs[2:]
    base = sum(soft_target_cross_entropy(logits, targets) for logits in heads) / len(heads)
    if teacher_logits is None:
        if dist_heads:
            raise ValueError("the model has distillation heads but no teacher was given (--teacher)")
        return base
    if not dist_heads:
        raise ValueError("distillation needs a model with distillation heads (Evo-LeViT with distillation=True)")
    distill = sum(hard_distillation_loss(logits, teacher_logits) for logits in dist_heads) / len(dist_heads)
    return (1.0 - alpha) * base + alpha * distill


# ---------------------------------------------------------------------------------------- callbacks
def unit_norm(tensor: paddle.Tensor) -> paddle.Tensor:
    """L2 norm per output unit in Paddle's layouts: Linear weights [in, out] per column, convolutions and tokens
    per leading index, vectors and scalars as a whole (timm's `unitwise_norm` on PyTorch layouts)."""
    if tensor.ndim <= 1:
        return tensor.norm()
    if tensor.ndim == 2:
        return tensor.norm(axis=0, keepdim=True)
    return tensor.norm(axis=list(range(1, tensor.ndim)), keepdim=True)


def adaptive_clip_gradients(parameters, clip_factor: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al., 2021), unit-wise: a gradient whose norm exceeds clip_factor x
    max(parameter norm, eps) is scaled down to it."""
    with paddle.no_grad():
        for param in parameters:
            grad = param.grad
            if grad is None:
                continue
            max_norm = paddle.clip(unit_norm(param), min=eps) * clip_factor
            grad_norm = unit_norm(grad)
            clipped = grad * (max_norm / paddle.clip(grad_norm, min=1e-6))
            paddle.assign(paddle.where(grad_norm > max_norm, clipped, grad), grad)


class AdaptiveGradClipCallback(TrainerCallback):
    """Clips the synchronised gradients just before the optimizer step."""

    def __init__(self, clip_factor: float):
        self.clip_factor = float(clip_factor)

    def on_optimizer_begin(self, args, state, control, model=None, **kwargs):
        model = getattr(model, "_layers", model)
        adaptive_clip_gradients([p for p in model.parameters() if not p.stop_gradient], self.clip_factor)


class LayerToStageCallback(TrainerCallback):
    """Layer-wise selection with fixed tradeoffs before `switch_epoch`, stage-wise selection with learnable
    tradeoffs (Evo-LeViT) from it on; applied at every epoch start, so resumed runs land in the right phase.
    Without a `switch_epoch` the switch comes at 2/3 of the run's epochs (200 of 300 upstream; shorter runs move
    it proportionally, or the stage-wise inference path would never be trained)."""

    def __init__(self, switch_epoch: Optional[float] = None):
        self.switch_epoch = None if switch_epoch is None else float(switch_epoch)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.switch_epoch is None:
            self.switch_epoch = float(state.num_train_epochs) * SWITCH_FRACTION
        logger.info("Evo training: layer-wise selection until epoch %g of %d, stage-wise after", self.switch_epoch,
                    state.num_train_epochs)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        apply_training_phase(getattr(model, "_layers", model), math.floor((state.epoch or 0.0) + 1e-6),
                             self.switch_epoch)


def apply_training_phase(model, epoch: float, switch_epoch: float) -> bool:
    """Set the selection mode of an Evo model for `epoch`; returns whether it is stage-wise."""
    stage_wise = epoch >= switch_epoch
    model.set_stage_wise(stage_wise)
    if hasattr(model, "set_learnable_tradeoff"):
        model.set_learnable_tradeoff(stage_wise)
    logger.info("epoch %d: %s selection", epoch, "stage-wise" if stage_wise else "layer-wise")
    return stage_wise


# ------------------------------------------------------------------------------------------ trainer
class EvoTrainer(FinetuneTrainer):
    """FinetuneTrainer with the Evo losses (auxiliary cls head, hard distillation from `teacher`), the
    layer-to-stage switch and optional adaptive gradient clipping."""

    def __init__(self, *args, teacher: Optional[paddle.nn.Layer] = None, distillation_alpha: float = 0.5,
                 switch_epoch: Optional[float] = None, agc_clip: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            for param in teacher.parameters():
                param.stop_gradient = True
        self.distillation_alpha = float(distillation_alpha)
        self.phase_switch = LayerToStageCallback(switch_epoch)
        self.add_callback(self.phase_switch)
        if agc_clip > 0:
            self.add_callback(AdaptiveGradClipCallback(agc_clip))
        logger.info("Evo training: %s", f"hard distillation from {type(teacher).__name__}" if teacher is not None
                    else "no distillation")

    def _wrap_model(self, model, training=True):
        """Plain data parallel with `find_unused_parameters` for models whose set of parameters reaching the loss
        varies (`varying_parameter_use`: Evo-LeViT's tradeoffs theta are unused before the switch, and those whose
        blended scores are never read again get no gradient after it), which the default reducer refuses."""
        plain_data_parallel = (training and self.args.world_size > 1 and not self.args.use_hybrid_parallel
                               and not self.do_grad_scaling and not isinstance(model, paddle.DataParallel))
        if plain_data_parallel and getattr(model, "varying_parameter_use", False):
            return paddle.DataParallel(model, find_unused_parameters=True)
        return super()._wrap_model(model, training)

    def compute_loss(self, model, inputs, return_outputs=False):
        image = inputs["image"]
        outputs = model(image=image)
        teacher_logits = None
        if self.teacher is not None:
            with paddle.no_grad():
                teacher_logits = self.teacher(image)
        loss = evo_loss(outputs, inputs["labels"], teacher_logits, self.distillation_alpha)
        logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
        return (loss, logits) if return_outputs else loss


# ------------------------------------------------------------------------------------------ loading
def load_teacher(name_or_dir: str) -> paddle.nn.Layer:
    """A frozen classifier in eval mode with its weights (zoo name or directory)."""
    teacher = model_class_for(name_or_dir).from_pretrained(name_or_dir)
    teacher.eval()
    logger.info("teacher %s (%s)", name_or_dir, type(teacher).__name__)
    return teacher


def load_evo_model(name_or_dir: str, num_classes: int, input_size: Optional[int] = None,
                   drop_path: Optional[float] = None, pretrained_model_path: Optional[str] = None):
    """An Evo model with `num_classes` outputs: a zoo name builds the architecture from scratch (the recipes train
    from scratch), a directory loads its weights (a head for another class count is initialised afresh)."""
    from paddlemix_eva import zoo

    overrides = {"num_classes": num_classes}
    if input_size:
        overrides["image_size"] = input_size
    if drop_path is not None:
        overrides["drop_path_rate"] = drop_path
    model_class = model_class_for(name_or_dir)
    if not hasattr(model_class, "set_stage_wise"):
        raise ValueError(f"{name_or_dir} is a {model_class.__name__}, not an Evo-ViT model")
    if os.path.isdir(name_or_dir):
        model = model_class.from_pretrained(name_or_dir, **overrides)
    else:
        model = model_class(zoo.build_config(zoo.get_entry(name_or_dir), model_class.config_class, **overrides))
    if pretrained_model_path:
        model.load_weights(pretrained_model_path)
    return model


def run_evo_training(model_args: EvoModelArguments, data_args: EvoDataArguments, args: EvoTrainingArguments):
    """Train an Evo model with its recipe; returns (trainer, metrics)."""
    if model_args.distillation_type not in DISTILLATION_TYPES:
        raise ValueError(f"--distillation_type must be one of {DISTILLATION_TYPES}, "
                         f"got {model_args.distillation_type!r}")
    if (model_args.distillation_type == "hard") != (model_args.teacher is not None):
        raise ValueError("--distillation_type hard needs --teacher NAME_OR_DIR, and --teacher needs it")
    if args.blr is not None:
        global_batch = effective_batch_size(args)
        args.learning_rate = args.blr * global_batch / 512
        logger.info("learning rate %g = blr %g x global batch %d / 512", args.learning_rate, args.blr, global_batch)
    teacher = load_teacher(model_args.teacher) if model_args.teacher else None
    return run_finetuning(model_args, data_args, args, load_model=load_evo_model, trainer_class=EvoTrainer,
                          teacher=teacher, distillation_alpha=model_args.distillation_alpha,
                          switch_epoch=model_args.switch_epoch, agc_clip=args.agc_clip)
