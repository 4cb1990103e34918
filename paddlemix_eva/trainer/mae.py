"""MAE recipes on PaddleNLP's `Trainer`: pre-training, fine-tuning and linear probing with the published defaults.

Fine-tuning and linear probing are the EVA fine-tuning runner (`finetune.run_finetuning`: augmentation, mixup,
layer decay, EMA, evaluation) with MAE's model loader, defaults and, for the probe, LARS. Every recipe sets the
learning rate from a base rate: lr = blr x effective batch / 256 unless `--learning_rate` is given.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import List, Optional

from paddlemix_eva.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from paddlemix_eva.trainer.base import (
    EVATrainer,
    EVATrainingArguments,
    apply_save_epochs,
    effective_batch_size,
    prepare_run,
    seed_everything,
    train_and_save,
)
from paddlemix_eva.trainer.finetune import (
    DeiTRecipeDataArguments,
    FinetuneArguments,
    FinetuneModelArguments,
    FinetuneTrainer,
    ImageNetFinetuneDataArguments,
    run_finetuning,
)
from paddlemix_eva.trainer.lars import LARS

logger = logging.getLogger(__name__)


def resolve_learning_rate(args) -> float:
    """Set `args.learning_rate` to blr x (per-device batch x accumulation x data-parallel ranks) / 256 when it was
    not given; an explicit `--learning_rate` wins (and is logged as such)."""
    effective_batch = effective_batch_size(args)
    if args.learning_rate is None:
        args.learning_rate = args.blr * effective_batch / 256
        logger.info("learning rate %.6g = blr %g x effective batch %d / 256", args.learning_rate, args.blr,
                    effective_batch)
    else:
        logger.info("learning rate %.6g given (--blr %g not used; effective batch %d)", args.learning_rate, args.blr,
                    effective_batch)
    return args.learning_rate


def prepare_mae_run(args) -> None:
    """Run checks and set-up (accumulation mapped first: it enters the effective batch), then the learning rate."""
    prepare_run(args)
    resolve_learning_rate(args)


# ------------------------------------------------------------------------------------------- pre-training
@dataclass
class MAEPretrainModelArguments:
    model: str = field(default="paddlemix/MAE/mae_vit_base_patch16",
                       metadata={"help": "zoo name or model directory: its config gives the architecture"})
    pretrained_model_path: Optional[str] = field(
        default=None, metadata={"help": "weights (file or directory) to start from instead of upstream init"})
    mask_ratio: Optional[float] = field(default=None, metadata={"help": "fraction of patches removed (config: 0.75)"})
    norm_pix_loss: Optional[bool] = field(default=None, metadata={"help": "per-patch normalised pixel targets"})
    input_size: Optional[int] = field(default=None, metadata={"help": "image size (default: the config's)"})


@dataclass
class MAEPretrainDataArguments:
    data_path: Optional[str] = field(default=None, metadata={"help": "image folder or file list of training images"})
    crop_scale_min: float = field(default=0.2, metadata={"help": "lower area bound of the random resized crop"})
    hflip: float = field(default=0.5, metadata={"help": "horizontal flip probability"})
    image_mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN), metadata={"help": "mean"})
    image_std: List[float] = field(default_factory=lambda: list(IMAGENET_STD), metadata={"help": "std"})


@dataclass
class MAEPretrainArguments(EVATrainingArguments):
    """Training arguments with the MAE pre-training recipe's defaults (PRETRAIN.md, ViT-L 800 epochs)."""

    blr: float = field(default=1.5e-4, metadata={"help": "base learning rate: lr = blr x effective batch / 256"})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "absolute learning rate (overrides blr)"})
    warmup_epochs: float = field(default=40.0, metadata={"help": "warmup length in epochs (unless --warmup_steps)"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (matrices and tokens)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "gradient clipping (0: off, as the recipe)"})
    num_train_epochs: float = field(default=800, metadata={"help": "training epochs"})
    save_epochs: float = field(default=20, metadata={"help": "checkpoint every this many epochs (0: use save_steps)"})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "images per device and micro-batch"})


class MAEPretrainTrainer(EVATrainer):
    """Reconstruction loss of `MAEForPretraining`. Every image has the same number of masked patches, so the mean
    of the ranks' losses is the loss of the global batch and data parallel trains exactly like one process."""

    def compute_loss(self, model, inputs, return_outputs=False):
        out = model(image=inputs["image"], noise=inputs["noise"])
        return (out["loss"], out) if return_outputs else out["loss"]


def build_pretrain_model(model_args: MAEPretrainModelArguments):
    """`MAEForPretraining` from the config of a zoo name or directory (plus overrides), with upstream init or the
    weights of `--pretrained_model_path`."""
    from paddlemix_eva import zoo
    from paddlemix_eva.models.mae import MAEConfig, MAEForPretraining

    overrides = {name: value for name, value in (("mask_ratio", model_args.mask_ratio),
                                                 ("norm_pix_loss", model_args.norm_pix_loss),
                                                 ("image_size", model_args.input_size)) if value is not None}
    if os.path.isdir(model_args.model):
        config = MAEConfig.from_pretrained(model_args.model, **overrides)
    else:
        config = zoo.build_config(zoo.get_entry(model_args.model), MAEConfig, **overrides)
    model = MAEForPretraining(config)
    if model_args.pretrained_model_path:
        model.load_weights(model_args.pretrained_model_path)
    return model


def run_mae_pretraining(model_args: MAEPretrainModelArguments, data_args: MAEPretrainDataArguments,
                        args: MAEPretrainArguments):
    """Build, check, train (resuming if asked), save the autoencoder, log a summary; returns (trainer, metrics)."""
    from paddlemix_eva.data.mae import MAEPretrainDataset, collate_mae

    prepare_mae_run(args)
    if not data_args.data_path:
        raise ValueError("--data_path is required (an image folder or a file list)")
    seed_everything(args.seed)
    model = build_pretrain_model(model_args)
    config = model.config
    dataset = MAEPretrainDataset(data_args.data_path, config.image_size, config.num_patches,
                                 crop_scale=(data_args.crop_scale_min, 1.0), hflip=data_args.hflip,
                                 mean=data_args.image_mean, std=data_args.image_std, seed=args.seed)
    apply_save_epochs(args, len(dataset))
    trainer = MAEPretrainTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate_mae)
    return trainer, train_and_save(trainer, "MAE pre-training", len(dataset))


# --------------------------------------------------------------------------------------------- fine-tuning
def load_mae_classifier(name_or_dir: str, num_classes: int, input_size: Optional[int] = None,
                        drop_path: Optional[float] = None, pretrained_model_path: Optional[str] = None,
                        global_pool: bool = True, linear_probe: bool = False):
    """An MAE ViT with `num_classes` outputs from any MAE checkpoint (pre-training: decoder and mask token are
    reported as dropped; another label set: fresh head, trunc-normal std 2e-5, or 0.01 for a probe). A linear
    probe gets the BatchNorm head and a frozen backbone."""
    from paddlemix_eva.models.mae import MAEVisionTransformer

    overrides = dict(num_classes=num_classes, global_pool=global_pool, linear_probe=linear_probe,
                     head_init_std=0.01 if linear_probe else 2e-5)
    if input_size:
        overrides["image_size"] = input_size
    if drop_path is not None:
        overrides["drop_path_rate"] = drop_path
    model = MAEVisionTransformer.from_pretrained(name_or_dir, **overrides)
    if pretrained_model_path:
        model.load_weights(pretrained_model_path)
    if linear_probe:
        model.freeze_backbone()
    return model


@dataclass
class MAEFinetuneModelArguments(FinetuneModelArguments):
    model: str = field(default="paddlemix/MAE/mae_pretrain_vit_base",
                       metadata={"help": "zoo name or directory: MAE pre-trained (or fine-tuned) weights"})
    layer_decay: float = field(default=0.65, metadata={"help": "layer-wise lr decay (0.65 for B, 0.75 for L/H)"})
    drop_path: Optional[float] = field(default=0.1, metadata={"help": "stochastic depth (0.1 B, 0.2 L, 0.3 H)"})
    global_pool: bool = field(default=True, metadata={"help": "mean of patch tokens + fc_norm (False: cls token)"})


@dataclass
class MAEFinetuneDataArguments(DeiTRecipeDataArguments):
    """FINETUNE.md's data pipeline is DeiT's."""


@dataclass
class MAEFinetuneArguments(FinetuneArguments):
    """The ViT-B/16 fine-tuning recipe of FINETUNE.md (L/H: blr 1e-3, 50 epochs)."""

    blr: float = field(default=5e-4, metadata={"help": "base learning rate: lr = blr x effective batch / 256"})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "absolute learning rate (overrides blr)"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "images per device and micro-batch"})


def run_mae_finetuning(model_args: MAEFinetuneModelArguments, data_args: MAEFinetuneDataArguments,
                       args: MAEFinetuneArguments):
    prepare_mae_run(args)
    loader = partial(load_mae_classifier, global_pool=model_args.global_pool)
    return run_finetuning(model_args, data_args, args, load_model=loader)


# ------------------------------------------------------------------------------------------ linear probing
@dataclass
class MAELinprobeModelArguments(FinetuneModelArguments):
    model: str = field(default="paddlemix/MAE/mae_pretrain_vit_base",
                       metadata={"help": "zoo name or directory: MAE pre-trained weights (frozen)"})
    layer_decay: float = field(default=1.0, metadata={"help": "layer-wise lr decay (only the head trains)"})
    drop_path: Optional[float] = field(default=0.0, metadata={"help": "stochastic depth of the frozen backbone"})


@dataclass
class MAELinprobeDataArguments(ImageNetFinetuneDataArguments):
    auto_augment: Optional[str] = field(default="none", metadata={"help": "RandAugment policy ('none': off)"})
    color_jitter: Optional[float] = field(default=None, metadata={"help": "colour jitter (off in the recipe)"})
    smoothing: float = field(default=0.0, metadata={"help": "label smoothing"})


@dataclass
class MAELinprobeArguments(FinetuneArguments):
    """The linear-probe recipe: LARS, blr 0.1 at batch 16384, no weight decay, 10 warmup of 90 epochs."""

    blr: float = field(default=0.1, metadata={"help": "base learning rate: lr = blr x effective batch / 256"})
    learning_rate: Optional[float] = field(default=None, metadata={"help": "absolute learning rate (overrides blr)"})
    weight_decay: float = field(default=0.0, metadata={"help": "LARS weight decay (matrices only)"})
    min_lr: float = field(default=0.0, metadata={"help": "final learning rate of the cosine schedule"})
    warmup_epochs: float = field(default=10.0, metadata={"help": "warmup length in epochs (unless --warmup_steps)"})
    num_train_epochs: float = field(default=90, metadata={"help": "training epochs (50 suffice for L/H)"})
    per_device_train_batch_size: int = field(default=512, metadata={"help": "images per device and micro-batch"})
    lars_momentum: float = field(default=0.9, metadata={"help": "LARS momentum"})
    lars_trust_coefficient: float = field(default=0.001, metadata={"help": "LARS trust coefficient"})


class LinearProbeTrainer(FinetuneTrainer):
    """Fine-tuning trainer whose optimizer is LARS over the trainable parameters (the head)."""

    def optimizer_class_and_kwargs(self) -> tuple:
        if self.args.weight_decay_end not in (None, self.args.weight_decay):
            raise ValueError("--weight_decay_end: the LARS linear probe keeps its weight decay constant; drop it")
        logger.info("optimizer LARS: momentum %g, trust %g, weight decay %g", self.args.lars_momentum,
                    self.args.lars_trust_coefficient, self.args.weight_decay)
        return LARS, {"momentum": self.args.lars_momentum, "trust_coefficient": self.args.lars_trust_coefficient,
                      "weight_decay": self.args.weight_decay}


def run_mae_linear_probe(model_args: MAELinprobeModelArguments, data_args: MAELinprobeDataArguments,
                         args: MAELinprobeArguments):
    prepare_mae_run(args)
    loader = partial(load_mae_classifier, global_pool=False, linear_probe=True)
    return run_finetuning(model_args, data_args, args, load_model=loader, trainer_class=LinearProbeTrainer)
