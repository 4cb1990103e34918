"""EVA-CLIP's training recipe (Sun et al., 2023) on PaddleNLP's `Trainer`, with PaddleMIX's flags.

What the paper adds to CLIP training, each a flag: LAMB (`--optimizer lamb`), a learning rate, weight decay and
layer-wise decay per tower (`--visual_lr --text_lr --visual_wd --text_wd --visual_ld --text_ld`, falling back to
`--learning_rate --weight_decay --layer_decay`), towers initialised from other models (`--pretrained_visual_model`
an EVA-02 MIM model, `--pretrained_text_model` a CLIP model), FLIP patch dropout (`--patch_dropout 0.5`), the
contrastive loss over the global batch with open_clip's `--local_loss` / `--gather_with_grad`, and zero-shot
top-1 / top-5 on an ImageNet-style folder at every evaluation (`--classification_eval DIR`).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from paddlenlp.trainer import TrainerCallback

from paddlemix_eva.layers.losses import clip_contrastive_loss
from paddlemix_eva.trainer.base import (
    EVATrainer,
    EVATrainingArguments,
    apply_save_epochs,
    effective_batch_size,
    prepare_run,
    seed_everything,
    train_and_save,
)
from paddlemix_eva.trainer.optim import PerParameterDecayAdamW, PerParameterDecayLamb, decayed_parameter_names
from paddlemix_eva.utils import processes

logger = logging.getLogger(__name__)
OPTIMIZERS = {"adamw": PerParameterDecayAdamW, "lamb": PerParameterDecayLamb}


# ------------------------------------------------------------------------------------- arguments
@dataclass
class CLIPModelArguments:
    model: str = field(default="paddlemix/EVA/EVA02-CLIP-B-16", metadata={"help": "zoo name or model directory"})
    from_scratch: bool = field(
        default=False, metadata={"help": "build from the model's config with upstream init instead of its weights"})
    pretrained_visual_model: Optional[str] = field(
        default=None, metadata={"help": "initialise the vision tower from this zoo name or directory: an EVA-02 "
                                        "(MIM) ViT or an EVA-CLIP"})
    pretrained_text_model: Optional[str] = field(
        default=None, metadata={"help": "initialise the text tower from this EVA-CLIP zoo name or directory"})
    patch_dropout: Optional[float] = field(
        default=None, metadata={"help": "FLIP: share of image tokens dropped at random in training (0.5 in the "
                                        "paper; default: the model config's)"})


@dataclass
class CLIPDataArguments:
    train_data: Optional[str] = field(
        default=None, metadata={"help": "Karpathy JSON (coco_karpathy_train.json), JSONL/CSV manifest, or "
                                        "webdataset tar shards (shards/{00000..00127}.tar, or a .txt listing them)"})
    image_root: Optional[str] = field(
        default=None, metadata={"help": "folder the Karpathy JSON's image paths are relative to (default: its own)"})
    shuffle_buffer: int = field(default=0, metadata={"help": "tar shards: samples held in memory and drawn at random "
                                                              "(0: shard order only)"})
    image_key: str = field(default="image", metadata={"help": "manifest field holding the image path"})
    caption_key: str = field(default="caption", metadata={"help": "manifest field holding the caption"})
    input_size: Optional[int] = field(default=None, metadata={"help": "training resolution (default: the model's)"})
    crop_scale_min: float = field(default=0.9, metadata={"help": "lower area bound of the random resized crop"})
    classification_eval: Optional[str] = field(
        default=None, metadata={"help": "ImageFolder (e.g. ImageNet val) for zero-shot top-1/top-5 at every "
                                        "evaluation and after training; 1000 folders get the ImageNet class names, "
                                        "others their folder names"})


@dataclass
class CLIPTrainingArguments(EVATrainingArguments):
    """PaddleMIX's EVA-CLIP training flags on top of the shared EVA ones."""

    optimizer: str = field(default="adamw", metadata={"help": "adamw or lamb (the paper's, PaddleMIX's command)"})
    visual_lr: Optional[float] = field(default=None, metadata={"help": "vision tower lr (default --learning_rate)"})
    text_lr: Optional[float] = field(default=None, metadata={"help": "text tower lr (default --learning_rate)"})
    visual_wd: Optional[float] = field(default=None, metadata={"help": "vision tower weight decay"})
    text_wd: Optional[float] = field(default=None, metadata={"help": "text tower weight decay"})
    layer_decay: float = field(default=1.0, metadata={"help": "layer-wise lr decay of both towers (1: none)"})
    visual_ld: Optional[float] = field(default=None, metadata={"help": "vision tower layer decay (0 or unset: "
                                                                       "--layer_decay)"})
    text_ld: Optional[float] = field(default=None, metadata={"help": "text tower layer decay (0 or unset: "
                                                                     "--layer_decay)"})
    local_loss: bool = field(default=False, metadata={"help": "open_clip: each rank's rows against all columns"})
    gather_with_grad: bool = field(
        default=True, metadata={"help": "open_clip: gathered features carry gradients (exact global-batch "
                                        "gradients; false is open_clip's default and drops the cross-rank terms)"})
    zero_shot_templates: Optional[str] = field(
        default=None, metadata={"help": "file of prompt templates for --classification_eval (default: the 80 "
                                        "OpenAI ImageNet templates)"})

    def __post_init__(self):
        super().__post_init__()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer {self.optimizer!r}: expected one of {sorted(OPTIMIZERS)}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"--layer_decay {self.layer_decay}: a layer decay is in (0, 1]")
        for name in ("visual_ld", "text_ld"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"--{name} {value}: a layer decay is in (0, 1] (0 or unset: --layer_decay)")


# ----------------------------------------------------------------------------- optimisation plan
@dataclass(frozen=True)
class TowerSetting:
    lr: float
    weight_decay: float
    layer_decay: float


def tower_settings(args: CLIPTrainingArguments) -> Dict[str, TowerSetting]:
    """Per tower: lr, weight decay, layer decay, each falling back to the shared flag as PaddleMIX's does (a layer
    decay of 0 or unset means `--layer_decay`); parameters outside both towers (`logit_scale`) use the shared ones."""
    def pick(value, default):
        return default if value is None else value

    return {
        "visual": TowerSetting(pick(args.visual_lr, args.learning_rate), pick(args.visual_wd, args.weight_decay),
                               args.visual_ld or args.layer_decay),
        "text": TowerSetting(pick(args.text_lr, args.learning_rate), pick(args.text_wd, args.weight_decay),
                             args.text_ld or args.layer_decay),
        "other": TowerSetting(args.learning_rate, args.weight_decay, 1.0),
    }


def parameter_plan(model, args: CLIPTrainingArguments) -> Dict[str, Tuple[float, float]]:
    """{parameter name: (lr multiplier of --learning_rate, weight decay)} for an EVACLIP: the tower's lr x
    layer_decay ** (L + 1 - layer id) with the layer ids each tower gives, its weight decay where AdamW decays
    (matrices, not position tables / tokens / norms / biases), else 0."""
    settings = tower_settings(args)
    decayed = decayed_parameter_names(model)
    depth: Dict[str, Tuple[str, int, int]] = {}
    for tower in ("visual", "text"):
        ids = getattr(model, tower).layer_ids()
        top = max(ids.values())
        depth.update({f"{tower}.{name}": (tower, layer, top) for name, layer in ids.items()})
    plan = {}
    for name, param in model.named_parameters():
        tower, layer, top = depth.get(name, ("other", 0, 0))
        setting = settings[tower]
        scale = setting.lr / args.learning_rate * setting.layer_decay ** (top - layer) if args.learning_rate else 1.0
        plan[name] = (float(scale), setting.weight_decay if param.name in decayed else 0.0)
    return plan


# ---------------------------------------------------------------------------------------- trainer
def collate_image_text(samples: Sequence[tuple]) -> Dict[str, np.ndarray]:
    """(image [3, H, W], token ids [77]) pairs -> {"image": [B, 3, H, W], "input_ids": [B, 77]} as numpy arrays:
    the DataLoader makes tensors of them in the main process (a Paddle op in a forked DataLoader worker can crash
    it: `--dataloader_num_workers 2` died at the second epoch while collators built tensors)."""
    images, ids = zip(*samples)
    return {"image": np.stack(images), "input_ids": np.stack(ids)}


class ClampLogitScale(TrainerCallback):
    """Keep the learned temperature exp(logit_scale) at or below 100 after every optimizer step, as CLIP does."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        target = getattr(model, "_layers", model)  # unwrap DataParallel
        with paddle.no_grad():
            target.logit_scale.set_value(target.logit_scale.clip(0.0, math.log(100.0)))


class CLIPTrainer(EVATrainer):
    """Symmetric InfoNCE across data-parallel ranks (`clip_contrastive_loss` with the run's `--local_loss` /
    `--gather_with_grad`), per-tower optimisation (`parameter_plan`), zero-shot evaluation (`zero_shot`)."""

    def __init__(self, *args, zero_shot: Optional["ZeroShotEvaluation"] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.tensor_parallel_degree > 1 or self.args.pipeline_parallel_degree > 1:
            raise ValueError("EVA-CLIP training supports data parallel and sharding; tensor/pipeline parallel is not "
                             "implemented for it")
        self.zero_shot = zero_shot
        self._plan: Optional[Dict[str, Tuple[float, float]]] = None
        self.add_callback(ClampLogitScale())
        self._seed_patch_dropout_per_rank()

    def _seed_patch_dropout_per_rank(self) -> None:
        """PaddleNLP seeds Paddle's RNG alike on every data-parallel rank; patch dropout draws from it, so each
        rank gets its own stream (else sample i of every rank would keep the same positions)."""
        model = getattr(self.model, "_layers", self.model)
        rate = getattr(getattr(model.config, "vision_config", None), "patch_dropout", 0) or 0
        if rate and self.args.dataset_world_size > 1:
            paddle.seed(self.args.seed + 1_000_003 * (self.args.dataset_rank + 1))

    def compute_loss(self, model, inputs, return_outputs=False):
        out = model(image=inputs["image"], input_ids=inputs["input_ids"])
        loss = clip_contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"],
                                     local_loss=getattr(self.args, "local_loss", False),
                                     gather_with_grad=getattr(self.args, "gather_with_grad", True))
        return (loss, out) if return_outputs else loss

    # ---------------------------------------------------------------------------------- data
    def get_train_dataloader(self):
        """Tar shards split themselves over ranks and workers, so they get a plain DataLoader (PaddleNLP would
        make every rank read every shard and keep one batch in N)."""
        if not isinstance(self.train_dataset, paddle.io.IterableDataset):
            return super().get_train_dataloader()
        return paddle.io.DataLoader(self.train_dataset, batch_size=self.args.per_device_train_batch_size,
                                    collate_fn=self.data_collator, num_workers=self.args.dataloader_num_workers,
                                    drop_last=True, worker_init_fn=processes.worker_init_fn())

    def train(self, resume_from_checkpoint=None, **kwargs):
        """Resuming on shards starts the stream after the batches the checkpoint's steps consumed, without
        decoding them (`ImageTextShards.resume`), instead of PaddleNLP's reading and discarding them."""
        checkpoint = self.resolve_checkpoint(resume_from_checkpoint)
        if checkpoint and hasattr(self.train_dataset, "resume"):
            with open(os.path.join(checkpoint, "trainer_state.json")) as f:
                step = int(json.load(f)["global_step"])
            self.train_dataset.resume(step * self.args.gradient_accumulation_steps,
                                      self.args.per_device_train_batch_size, self.args.dataloader_num_workers)
            self.args.ignore_data_skip = True
            logger.info("tar shards resume after %d batches per rank (step %d)", step * self.args.
                        gradient_accumulation_steps, step)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    # --------------------------------------------------------------------------- optimisation
    def plan(self) -> Dict[str, Tuple[float, float]]:
        if self._plan is None:
            model = getattr(self.model, "_layers", self.model)
            if isinstance(self.args, CLIPTrainingArguments):
                self._plan = parameter_plan(model, self.args)
            else:  # plain EVA arguments: one lr and decay for everything
                decayed = decayed_parameter_names(model)
                self._plan = {n: (1.0, self.args.weight_decay if p.name in decayed else 0.0)
                              for n, p in model.named_parameters()}
        return self._plan

    def lr_scale_for(self, name: str) -> float:
        return self.plan()[name][0]

    def optimizer_class_and_kwargs(self):
        """The `--optimizer` class with a weight-decay coefficient per parameter (`parameter_plan`)."""
        model = getattr(self.model, "_layers", self.model)
        decay_of = {p.name: self.plan()[n][1] for n, p in model.named_parameters()}
        name = getattr(self.args, "optimizer", "adamw")
        kwargs = {"beta1": self.args.adam_beta1, "beta2": self.args.adam_beta2, "epsilon": self.args.adam_epsilon,
                  "decay_of": decay_of}
        if name == "lamb":
            kwargs["lamb_weight_decay"] = self.args.weight_decay
            kwargs["exclude_from_weight_decay_fn"] = lambda param: decay_of.get(param.name, 0.0) == 0.0
        return OPTIMIZERS[name], kwargs

    # ------------------------------------------------------------------------------ evaluation
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Zero-shot classification on `--classification_eval` (every rank evaluates its share), logged as
        `eval_zeroshot_top1` / `_top5` (VisualDL curves); without it, PaddleNLP's evaluation of `eval_dataset`."""
        if self.zero_shot is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        model = getattr(self.model, "_layers", self.model)
        metrics = {f"{metric_key_prefix}_zeroshot_{k}": v for k, v in self.zero_shot.run(model).items()}
        self.log(dict(metrics))  # PaddleNLP's log adds its progress to the dict it gets
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        return metrics


class ZeroShotEvaluation:
    """Zero-shot top-1 / top-5 of a CLIP model on an ImageFolder: class embeddings from the current text tower
    (recomputed at each call, since training changes it), images at the model's own eval preprocessing."""

    def __init__(self, folder: str, templates: Optional[List[str]] = None, batch_size: int = 64,
                 num_workers: int = 0):
        from paddlemix_eva.data.datasets import ImageFolder

        self.dataset = ImageFolder(folder)
        self.class_names = folder_class_names(self.dataset.classes)
        self.templates = templates
        self.batch_size, self.num_workers = batch_size, num_workers
        logger.info("zero-shot evaluation on %s: %d images of %d classes", folder, len(self.dataset),
                    len(self.class_names))

    def run(self, model) -> Dict[str, float]:
        from paddlemix_eva.tasks.evaluation import classification_metrics, predict
        from paddlemix_eva.tasks.zeroshot import ZeroShotClassifier

        was_training = model.training
        self.dataset.transform = model.config.preprocessing.eval_transform()
        classifier = ZeroShotClassifier(model, self.class_names, self.templates)
        out = predict(classifier, self.dataset, self.batch_size, self.num_workers)
        model.train(was_training)
        metrics = classification_metrics(out["logits"], out["labels"])
        logger.info("zero-shot top-1 %.2f%%, top-5 %.2f%% over %d images", metrics["top1"], metrics["top5"],
                    metrics["num_samples"])
        return {"top1": metrics["top1"], "top5": metrics["top5"]}


def folder_class_names(folders: Sequence[str]) -> List[str]:
    """Prompt names for ImageFolder classes: ImageNet's 1000 names for a 1000-folder tree (WordNet ids sort in
    label order), else the folder names with underscores as spaces."""
    from paddlemix_eva.tasks.zeroshot import default_classnames

    if len(folders) == 1000:
        return default_classnames()
    return [name.replace("_", " ") for name in folders]


# --------------------------------------------------------------------------------------- the run
def load_clip(name_or_dir: str, from_scratch: bool = False):
    """An EVACLIP by zoo name or directory: its weights, or (`from_scratch`) its config with upstream init."""
    from paddlemix_eva import zoo
    from paddlemix_eva.models import EVACLIP, EVACLIPConfig

    if not from_scratch:
        return EVACLIP.from_pretrained(name_or_dir)
    if os.path.isdir(name_or_dir):
        return EVACLIP(EVACLIPConfig.from_pretrained(name_or_dir))
    return zoo.get_model(name_or_dir)


def build_clip_model(model_args: CLIPModelArguments, input_size: Optional[int]):
    """The model to train: loaded or built, towers initialised from other models, input size and patch dropout."""
    from paddlemix_eva.models.evaclip.towers import load_tower

    model = load_clip(model_args.model, model_args.from_scratch)
    if model_args.pretrained_visual_model:
        load_tower(model, "visual", model_args.pretrained_visual_model)
    if model_args.pretrained_text_model:
        load_tower(model, "text", model_args.pretrained_text_model)
    model.set_input_size(input_size or model.config.vision_config.image_size)
    if model_args.patch_dropout is not None:
        model.visual.set_patch_dropout(model_args.patch_dropout)
    return model


def run_clip_pretraining(model_args: CLIPModelArguments, data_args: CLIPDataArguments,
                         training_args: EVATrainingArguments) -> dict:
    """Build model, data and `CLIPTrainer` from parsed arguments; train, save, evaluate; return the metrics."""
    from paddlemix_eva.data.transforms import RandomResizedCropTransform
    from paddlemix_eva.models.evaclip import get_tokenizer
    from paddlemix_eva.tasks.zeroshot import read_lines

    if not data_args.train_data:
        raise ValueError("--train_data is required: a Karpathy JSON, a JSONL/CSV manifest or tar shards")
    prepare_run(training_args)
    seed_everything(training_args.seed)
    zero_shot = None
    if data_args.classification_eval:
        templates = getattr(training_args, "zero_shot_templates", None)
        zero_shot = ZeroShotEvaluation(data_args.classification_eval,
                                       read_lines(templates, "templates") if templates else None,
                                       training_args.per_device_eval_batch_size,
                                       training_args.dataloader_num_workers)
    model = build_clip_model(model_args, data_args.input_size)
    size = model.config.vision_config.image_size
    transform = RandomResizedCropTransform(size, scale=(data_args.crop_scale_min, 1.0))
    tokenizer = get_tokenizer()
    context = model.config.text_config.context_length
    dataset = open_training_data(data_args, training_args, transform, lambda text: tokenizer(text, context))
    streamed = isinstance(dataset, paddle.io.IterableDataset)
    num_samples = training_args.max_steps * effective_batch_size(training_args) if streamed else len(dataset)
    if not streamed:
        apply_save_epochs(training_args, len(dataset))
    trainer = CLIPTrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collate_image_text,
                          zero_shot=zero_shot)
    metrics = train_and_save(trainer, "EVA-CLIP contrastive training", num_samples)
    if zero_shot is not None:
        final = trainer.evaluate()
        metrics.update(final)
        if training_args.should_save:
            with open(os.path.join(training_args.output_dir, "zeroshot_metrics.json"), "w") as f:
                json.dump(final, f, indent=2)
    return metrics


def open_training_data(data_args: CLIPDataArguments, training_args, transform, tokenize):
    """The dataset `--train_data` names (`paddlemix_eva.data.image_text`); shards split themselves over the
    data-parallel ranks and stream without end, so the run length is `--max_steps`."""
    from paddlemix_eva.data.image_text import is_shard_spec, open_image_text_data

    if is_shard_spec(data_args.train_data) and training_args.max_steps <= 0:
        raise ValueError(f"--train_data {data_args.train_data}: tar shards stream without a length; give the run's "
                         "length with --max_steps")
    return open_image_text_data(
        data_args.train_data, transform, tokenize, seed=training_args.seed,
        rank=max(0, training_args.dataset_rank), world_size=max(1, training_args.dataset_world_size),
        image_root=data_args.image_root, image_key=data_args.image_key, caption_key=data_args.caption_key,
        shuffle_buffer=data_args.shuffle_buffer,
    )
