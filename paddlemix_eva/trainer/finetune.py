"""EVA-02 image-classification fine-tuning with PaddleNLP's `Trainer`: the full upstream recipe (RandAugment,
random erasing, mixup / cutmix with label smoothing, layer-wise learning-rate decay, model EMA) and the run entry
points of `run_eva02_finetune_dist.py` / `run_eva02_finetune_eval.py`."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn.functional as F

from paddlemix_eva.data.augment import Mixup, build_train_transform, mixup_target
from paddlemix_eva.data.datasets import ImageFolder, SeededImageFolder, batch_rng
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from paddlemix_eva.tasks.evaluation import evaluate_classifier, write_report
from paddlemix_eva.trainer.base import (
    EVATrainer,
    EVATrainingArguments,
    apply_save_epochs,
    prepare_run,
    run_loss_summary,
    saved_in,
    seed_everything,
)
from paddlemix_eva.trainer.ema import EMACallback, ModelEMA, ema_dir

logger = logging.getLogger(__name__)


@dataclass
class FinetuneModelArguments:
    model: str = field(default="paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_p14",
                       metadata={"help": "zoo name or directory: MIM / IN-21K / fine-tuned weights to start from"})
    pretrained_model_path: Optional[str] = field(default=None, metadata={"help": "weights file or dir loaded on top"})
    input_size: Optional[int] = field(default=None, metadata={"help": "fine-tuning resolution (pos_embed resampled)"})
    drop_path: Optional[float] = field(default=None, metadata={"help": "stochastic depth rate"})
    layer_decay: float = field(default=0.9, metadata={"help": "layer-wise learning-rate decay (1.0: off)"})
    model_ema: bool = field(default=False, metadata={"help": "keep, evaluate and save an EMA of the weights"})
    model_ema_decay: float = field(default=0.9999, metadata={"help": "EMA decay per optimizer step"})


@dataclass
class FinetuneDataArguments:
    data_path: Optional[str] = field(default=None, metadata={"help": "training ImageFolder (one folder per class)"})
    eval_data_path: Optional[str] = field(default=None, metadata={"help": "validation ImageFolder"})
    scale_min: float = field(default=0.08, metadata={"help": "lower area bound of the random resized crop"})
    hflip: float = field(default=0.5, metadata={"help": "horizontal flip probability"})
    auto_augment: Optional[str] = field(default="rand-m9-mstd0.5-inc1",
                                        metadata={"help": "RandAugment policy ('none' to disable)"})
    color_jitter: Optional[float] = field(default=0.4, metadata={"help": "colour jitter, only without RandAugment"})
    reprob: float = field(default=0.0, metadata={"help": "random erasing probability"})
    remode: str = field(default="pixel", metadata={"help": "random erasing fill: pixel | rand | const"})
    recount: int = field(default=1, metadata={"help": "random erasing rectangles per image"})
    mixup: float = field(default=0.0, metadata={"help": "mixup alpha (0: off)"})
    cutmix: float = field(default=0.0, metadata={"help": "cutmix alpha (0: off)"})
    cutmix_minmax: Optional[List[float]] = field(default=None, metadata={"help": "cutmix box ratio bounds"})
    mixup_prob: float = field(default=1.0, metadata={"help": "probability of mixing a batch"})
    mixup_switch_prob: float = field(default=0.5, metadata={"help": "probability of cutmix instead of mixup"})
    mixup_mode: str = field(default="batch", metadata={"help": "mixup mode"})
    smoothing: float = field(default=0.1, metadata={"help": "label smoothing"})
    crop_pct: float = field(default=1.0, metadata={"help": "eval: resize to size/crop_pct, then centre crop"})
    image_mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN), metadata={"help": "normalisation mean"})
    image_std: List[float] = field(default_factory=lambda: list(CLIP_STD), metadata={"help": "normalisation std"})


@dataclass
class ImageNetFinetuneDataArguments(FinetuneDataArguments):
    """ImageNet mean/std and the 0.875 evaluation crop: the preprocessing of every recipe not trained from CLIP
    features (MAE, DeiT and Evo-ViT)."""

    crop_pct: float = field(default=0.875, metadata={"help": "eval: resize to size/crop_pct, then centre crop"})
    image_mean: List[float] = field(default_factory=lambda: list(IMAGENET_MEAN), metadata={"help": "mean"})
    image_std: List[float] = field(default_factory=lambda: list(IMAGENET_STD), metadata={"help": "std"})


@dataclass
class DeiTRecipeDataArguments(ImageNetFinetuneDataArguments):
    """DeiT's augmentation, which MAE fine-tuning and Evo-ViT reuse: RandAugment m9, mixup 0.8, cutmix 1.0,
    random erasing 0.25, label smoothing 0.1."""

    reprob: float = field(default=0.25, metadata={"help": "random erasing probability"})
    mixup: float = field(default=0.8, metadata={"help": "mixup alpha (0: off)"})
    cutmix: float = field(default=1.0, metadata={"help": "cutmix alpha (0: off)"})


@dataclass
class FinetuneArguments(EVATrainingArguments):
    """Training arguments with the EVA-02 Ti IN-1K fine-tuning recipe's defaults."""

    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    min_lr: float = field(default=1e-6, metadata={"help": "final learning rate of the cosine schedule"})
    warmup_epochs: float = field(default=5.0, metadata={"help": "warmup length in epochs (unless --warmup_steps)"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (matrices only)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "gradient clipping (0: off, as the recipe)"})
    num_train_epochs: float = field(default=100, metadata={"help": "training epochs"})
    save_epochs: float = field(default=1, metadata={"help": "checkpoint every this many epochs (0: use save_steps)"})


# --------------------------------------------------------------------------------------- recipe
def layer_decay_scales(model, decay: float) -> Dict[str, float]:
    """decay ** (L + 1 - layer_id) per parameter, with the layer ids the model gives (`layer_ids`): the head trains
    at the full rate, each block below it `decay` times slower."""
    layer_ids = model.layer_ids()
    top = max(layer_ids.values())
    return {name: float(decay ** (top - layer_id)) for name, layer_id in layer_ids.items()}


class ClassificationCollator:
    """(image, label[, key]) samples -> {"image", "labels"}: labels are soft targets, mixed by mixup / cutmix when
    on, else label-smoothed one-hots (the loss is the same soft-target cross-entropy either way). Numpy arrays: the
    DataLoader makes the tensors in the main process (never Paddle ops in a forked worker).

    Mixing draws from `batch_rng` of the first sample's key (seed, epoch, index; `SeededImageFolder` gives it), so
    it does not depend on the DataLoader worker that collates the batch and a resumed run mixes as the
    uninterrupted one; samples without a key fall back to numpy's global RNG."""

    def __init__(self, num_classes: int, smoothing: float = 0.1, mixup=None):
        self.num_classes, self.smoothing, self.mixup = num_classes, smoothing, mixup

    def __call__(self, samples: Sequence[tuple]) -> Dict[str, paddle.Tensor]:
        images = np.stack([s[0] for s in samples]).astype(np.float32)
        labels = np.asarray([s[1] for s in samples], np.int64)
        if self.mixup is not None:
            rng = batch_rng(samples[0][2]) if len(samples[0]) > 2 else None
            images, targets = self.mixup(images, labels, rng)
        else:
            targets = mixup_target(labels, self.num_classes, 1.0, self.smoothing)
        return {"image": images, "labels": targets.astype(np.float32)}


def soft_target_cross_entropy(logits: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
    return (-targets * F.log_softmax(logits.astype("float32"), axis=-1)).sum(axis=-1).mean()


class FinetuneTrainer(EVATrainer):
    """Soft-target cross-entropy, layer-wise LR decay, optional model EMA; evaluation counts every validation
    sample exactly once (raw and EMA weights) and reports top-1 / top-5."""

    def __init__(self, *args, layer_decay: float = 1.0, ema_decay: Optional[float] = None, class_names=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.layer_decay = float(layer_decay)
        self._layer_scales: Optional[Dict[str, float]] = None
        self.class_names = class_names
        self.ema = ModelEMA(self.model, ema_decay) if ema_decay else None
        if self.ema is not None:
            self.add_callback(EMACallback(self.ema))

    def lr_scale_for(self, name: str) -> float:
        if self.layer_decay >= 1.0:
            return 1.0
        if self._layer_scales is None:
            self._layer_scales = layer_decay_scales(getattr(self.model, "_layers", self.model), self.layer_decay)
        return self._layer_scales[name]

    def compute_loss(self, model, inputs, return_outputs=False):
        logits = model(image=inputs["image"])
        loss = soft_target_cross_entropy(logits, inputs["labels"])
        return (loss, logits) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            return {}
        metrics = {}
        models = [("", self.model)] + ([("ema_", self.ema.module)] if self.ema is not None else [])
        for tag, model in models:
            result = evaluate_classifier(model, dataset, self.args.per_device_eval_batch_size,
                                         self.args.dataloader_num_workers, self.class_names)
            metrics.update({f"{metric_key_prefix}_{tag}top1": result["top1"],
                            f"{metric_key_prefix}_{tag}top5": result["top5"]})
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        return metrics

    def save_model(self, output_dir: Optional[str] = None, merge_tensor_parallel: Optional[bool] = False):
        super().save_model(output_dir, merge_tensor_parallel)
        if self.ema is not None and self.args.should_save:
            self.ema.save(ema_dir(output_dir or self.args.output_dir))

    def train(self, resume_from_checkpoint=None, **kwargs):
        resume_from_checkpoint = self.resolve_checkpoint(resume_from_checkpoint)
        if self.ema is not None and isinstance(resume_from_checkpoint, str):
            if os.path.isdir(ema_dir(resume_from_checkpoint)):
                self.ema.load(ema_dir(resume_from_checkpoint))
            else:
                logger.warning("%s has no EMA weights; the EMA restarts from the resumed weights",
                               resume_from_checkpoint)
                self.ema = ModelEMA(self.model, self.ema.decay)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


# ---------------------------------------------------------------------------------------- runners
def load_classifier(name_or_dir: str, num_classes: int, input_size: Optional[int] = None,
                    drop_path: Optional[float] = None, pretrained_model_path: Optional[str] = None):
    """A classifier with `num_classes` outputs from a checkpoint of any family: a classifier as it is, a
    pre-training checkpoint as the classifier it fine-tunes into (EVA-02 MIM -> EVA-02 ViT, MAE -> ViT) with a
    fresh head (pre-training-only keys are reported as dropped); another input size resamples `pos_embed` with a
    warning."""
    from paddlemix_eva import zoo
    from paddlemix_eva.tasks.inference import UNTYPED_MODEL

    model_class = zoo.classifier_class_for(name_or_dir, untyped=UNTYPED_MODEL)
    overrides = {"num_classes": num_classes}
    if input_size:
        overrides["image_size"] = input_size
    if drop_path is not None:
        overrides["drop_path_rate"] = drop_path
    model = model_class.from_pretrained(name_or_dir, **overrides)
    if pretrained_model_path:
        model.load_weights(pretrained_model_path)
    return model


def build_mixup(data_args: FinetuneDataArguments, num_classes: int):
    if data_args.mixup <= 0 and data_args.cutmix <= 0 and data_args.cutmix_minmax is None:
        return None
    return Mixup(mixup_alpha=data_args.mixup, cutmix_alpha=data_args.cutmix, cutmix_minmax=data_args.cutmix_minmax,
                 prob=data_args.mixup_prob, switch_prob=data_args.mixup_switch_prob, mode=data_args.mixup_mode,
                 label_smoothing=data_args.smoothing, num_classes=num_classes)


def run_finetuning(model_args: FinetuneModelArguments, data_args: FinetuneDataArguments, args: FinetuneArguments,
                   load_model: Callable[..., paddle.nn.Layer] = load_classifier,
                   trainer_class: type = FinetuneTrainer, **trainer_kwargs):
    """Build, check, train (resuming if asked), evaluate, save; returns (trainer, metrics), `train_loss` being the
    mean loss over the steps this run took (`EVATrainer.run_metrics`).

    Other families reuse the recipe with their own `load_model(name_or_dir, num_classes, input_size, drop_path,
    pretrained_model_path)` and `trainer_class` (a `FinetuneTrainer` subclass; `trainer_kwargs` go to it)."""
    prepare_run(args)
    if not data_args.data_path:
        raise ValueError("--data_path (the training ImageFolder) is required")
    seed_everything(args.seed)
    probe = ImageFolder(data_args.data_path)
    check_training_classes(probe.classes, data_args.data_path)
    model = load_model(model_args.model, len(probe.classes), model_args.input_size, model_args.drop_path,
                       model_args.pretrained_model_path)
    model.config.class_names = list(probe.classes)
    # the saved model declares the evaluation preprocessing it was validated with
    model.config.mean, model.config.std = list(data_args.image_mean), list(data_args.image_std)
    model.config.crop_pct = float(data_args.crop_pct)
    size = model.config.image_size
    auto_augment = None if (data_args.auto_augment or "").lower() in ("", "none") else data_args.auto_augment
    train_transform = build_train_transform(
        size, scale=(data_args.scale_min, 1.0), hflip=data_args.hflip, auto_augment=auto_augment,
        color_jitter=data_args.color_jitter, reprob=data_args.reprob, remode=data_args.remode,
        recount=data_args.recount, mean=data_args.image_mean, std=data_args.image_std,
    )
    # augmentation seeded by (seed, epoch, sample): independent of processes and workers, exact on resume
    train_set = SeededImageFolder(data_args.data_path, train_transform, seed=args.seed)
    eval_set = None
    if data_args.eval_data_path:
        eval_transform = model.config.preprocessing.eval_transform()
        eval_set = ImageFolder(data_args.eval_data_path, eval_transform, classes=train_set.classes)
    apply_save_epochs(args, len(train_set))
    collator = ClassificationCollator(len(train_set.classes), data_args.smoothing,
                                      build_mixup(data_args, len(train_set.classes)))
    trainer = trainer_class(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set, data_collator=collator,
        layer_decay=model_args.layer_decay, ema_decay=model_args.model_ema_decay if model_args.model_ema else None,
        class_names=train_set.classes, **trainer_kwargs,
    )
    start = time.time()
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    metrics = dict(result.metrics)
    if eval_set is not None:
        metrics.update(trainer.evaluate())
    trainer.save_metrics("all", metrics)
    trainer.save_state()  # trainer_state.json beside the model: the whole log history (losses, evaluations)
    logger.info("fine-tuning done: %d steps in %.0f s; %s; %s; model %s%s", trainer.state.global_step,
                time.time() - start, run_loss_summary(metrics),
                ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.startswith("eval_")) or "no evaluation",
                saved_in(args), " (EMA in ema/)" if trainer.ema is not None and args.should_save else "")
    return trainer, metrics


@dataclass
class EvalArguments:
    """The flags of PaddleMIX's evaluation command (`run_eva02_finetune_eval.py --do_eval --model M
    --pretrained_model_path P --eval_data_path D --input_size S --per_device_eval_batch_size B
    --dataloader_num_workers W --output_dir O --recompute True --fp16 False`), each acting."""

    model: str = field(default="paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14",
                       metadata={"help": "zoo name or model directory"})
    eval_data_path: Optional[str] = field(default=None, metadata={"help": "validation ImageFolder"})
    pretrained_model_path: Optional[str] = field(
        default=None, metadata={"help": "weights file or directory loaded on top of --model"})
    input_size: Optional[int] = field(default=None, metadata={"help": "evaluation resolution (default: the model's)"})
    crop_pct: Optional[float] = field(default=None, metadata={"help": "resize to size/crop_pct, then centre crop "
                                                                      "(default: the model config's)"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "images per batch and process"})
    dataloader_num_workers: int = field(default=2, metadata={"help": "decoding worker processes"})
    use_ema: bool = field(default=False, metadata={"help": "evaluate the EMA weights in <model>/ema"})
    output_dir: Optional[str] = field(default=None, metadata={"help": "write eval_report.json here"})
    do_eval: bool = field(default=True, metadata={"help": "evaluate (false: nothing to do)"})
    recompute: bool = field(default=False, metadata={"help": "accepted for PaddleMIX's command; a forward without "
                                                              "gradients keeps no activations to recompute"})
    fp16: bool = field(default=False, metadata={"help": "float16 autocast (CUDA only)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast (CUDA only)"})
    fp16_opt_level: str = field(default="O1", metadata={"help": "autocast level with --fp16/--bf16: O1 or O2"})

    def __post_init__(self):
        from paddlemix_eva.trainer.base import check_device_arguments

        check_device_arguments(self)
        if self.fp16_opt_level not in ("O1", "O2"):
            raise ValueError(f"--fp16_opt_level {self.fp16_opt_level!r}: expected O1 or O2")
        if not self.eval_data_path and self.do_eval:
            raise ValueError("--eval_data_path (the validation ImageFolder) is required")

    @property
    def precision(self) -> Optional[str]:
        return "float16" if self.fp16 else "bfloat16" if self.bf16 else None


def run_evaluation_command(args: EvalArguments) -> Optional[Dict[str, object]]:
    """`run_eva02_finetune_eval.py`: evaluate as the flags say, log the result, write the report."""
    if not args.do_eval:
        logger.info("--do_eval false: nothing to do")
        return None
    if args.recompute:
        logger.info("--recompute: evaluation keeps no activations for a backward pass, so there is nothing to "
                    "recompute; ignored")
    report = os.path.join(args.output_dir, "eval_report.json") if args.output_dir else None
    metrics = run_evaluation(args.model, args.eval_data_path, args.per_device_eval_batch_size,
                             args.dataloader_num_workers, args.input_size, args.crop_pct, args.use_ema, report,
                             pretrained_model_path=args.pretrained_model_path, precision=args.precision,
                             amp_level=args.fp16_opt_level)
    logger.info("top-1 %.2f%%  top-5 %.2f%%  over %d images (%d unreadable)", metrics["top1"], metrics["top5"],
                metrics["num_samples"], metrics["skipped"])
    return metrics


def run_evaluation(model_name_or_dir: str, eval_data_path: str, batch_size: int = 64, num_workers: int = 0,
                   input_size: Optional[int] = None, crop_pct: Optional[float] = None, use_ema: bool = False,
                   report_path: Optional[str] = None, mean: Optional[Sequence[float]] = None,
                   std: Optional[Sequence[float]] = None,
                   model_class: Optional[type] = None, pretrained_model_path: Optional[str] = None,
                   precision: Optional[str] = None, amp_level: str = "O1") -> Dict[str, object]:
    """Top-1 / top-5 / per-class accuracy of a classifier (of any family; `model_class` forces one) on an ImageFolder,
    every sample counted once on any number of processes; the validation classes must be the model's. The
    preprocessing is the model config's; `crop_pct`, `mean`, `std` override it.
    `pretrained_model_path` loads weights on top (PaddleMIX's flag); `precision` ("float16" / "bfloat16", CUDA)
    runs the forward under autocast at `amp_level`."""
    source = ema_dir(model_name_or_dir) if use_ema else model_name_or_dir
    if use_ema and not os.path.isdir(source):
        raise FileNotFoundError(f"--use_ema: {model_name_or_dir} has no EMA weights ({source} is missing)")
    if model_class is None:
        from paddlemix_eva import zoo
        from paddlemix_eva.tasks.inference import UNTYPED_MODEL

        model_class = zoo.classifier_class_for(source, untyped=UNTYPED_MODEL)
    overrides = {"image_size": input_size} if input_size else {}
    model = model_class.from_pretrained(source, **overrides)
    if pretrained_model_path:
        model.load_weights(pretrained_model_path)
    declared = model.config.preprocessing
    preprocessing = dataclasses.replace(
        declared,
        crop_pct=declared.crop_pct if crop_pct is None else float(crop_pct),
        mean=declared.mean if mean is None else tuple(mean),
        std=declared.std if std is None else tuple(std),
    )
    dataset = ImageFolder(eval_data_path, preprocessing.eval_transform())
    check_label_space(model.config, dataset.classes, eval_data_path)
    metrics = evaluate_classifier(model, dataset, batch_size, num_workers, dataset.classes, precision=precision,
                                  amp_level=amp_level)
    metrics.update({"model": model_name_or_dir, "ema": use_ema, "eval_data_path": eval_data_path})
    if report_path and (not paddle.distributed.is_initialized() or paddle.distributed.get_rank() == 0):
        write_report(metrics, report_path)
    return metrics


#: folder names that are dataset splits, not classes
SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing", "eval"}


def check_training_classes(classes: Sequence[str], data_path: str) -> None:
    """Refuse a training folder with one class (the head would learn nothing); warn when the class folders look like
    dataset splits (`--data_path` pointed at the parent of train/ and val/)."""
    if len(classes) < 2:
        raise ValueError(
            f"{data_path} has {len(classes)} class folder{'s' if len(classes) != 1 else ''} {list(classes)}: a "
            "classifier needs at least two. --data_path is the folder whose sub-folders are the classes "
            "(one folder of images per class)"
        )
    splits = sorted(c for c in classes if c.lower() in SPLIT_NAMES)
    if splits and len(splits) * 2 >= len(classes):
        logger.warning(
            "!! the class folders of %s are %s, which look like dataset splits, not classes: the model would learn "
            "to tell %s apart. Did you mean --data_path %s?", data_path, list(classes), " from ".join(splits),
            os.path.join(data_path, splits[-1] if "train" not in splits else "train"),
        )


def check_label_space(config, classes: Sequence[str], data_path: str) -> None:
    """Refuse a validation set whose classes are not the ones the model's head was trained on."""
    trained = getattr(config, "class_names", None)
    if config.num_classes != len(classes):
        raise ValueError(
            f"{data_path} has {len(classes)} class folders but the model's head has {config.num_classes} outputs"
        )
    if trained is not None and list(trained) != list(classes):
        differing = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(trained, classes)) if a != b][:5]
        raise ValueError(f"{data_path}: class folders differ from the classes the model was trained on ({differing})")
