"""EVA-02 masked image modeling with PaddleNLP's `Trainer`: arguments of the PaddleMIX recipe, the global-batch
loss, upstream's schedules, grad-norm logging and the run entry point used by `run_eva02_pretrain_dist.py`."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

import paddle
import paddle.distributed as dist

from paddlemix_eva.data.mim import MIMPretrainDataset, collate_mim
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD
from paddlemix_eva.trainer.base import (
    EVATrainer,
    EVATrainingArguments,
    apply_save_epochs,
    prepare_run,
    seed_everything,
    train_and_save,
)

logger = logging.getLogger(__name__)


@dataclass
class MIMModelArguments:
    model: Optional[str] = field(
        default="paddlemix/EVA/EVA02/eva02_Ti_for_pretrain",
        metadata={"help": "composite zoo name or config directory; 'None' builds from --teacher / --student"},
    )
    teacher: Optional[str] = field(default=None, metadata={"help": "EVA-CLIP teacher (zoo name or directory)"})
    student: Optional[str] = field(
        default=None, metadata={"help": "EVA-02 MIM student: zoo name / directory (its weights), or a zoo name with "
                                        "--student_from_scratch"}
    )
    student_from_scratch: bool = field(
        default=False, metadata={"help": "build --student from its config with upstream init instead of its weights"}
    )
    drop_path: Optional[float] = field(default=None, metadata={"help": "student stochastic depth rate"})


@dataclass
class MIMDataArguments:
    data_path: Optional[str] = field(default=None, metadata={"help": "image folder or file list of training images"})
    input_size: Optional[int] = field(default=None, metadata={"help": "student resolution (default: the student's)"})
    second_input_size: Optional[int] = field(
        default=None, metadata={"help": "teacher resolution (default: the teacher's)"}
    )
    num_mask_patches: int = field(default=105, metadata={"help": "masked patches per image (target)"})
    min_mask_patches_per_block: int = field(default=16, metadata={"help": "smallest masking block"})
    max_mask_patches_per_block: Optional[int] = field(default=None, metadata={"help": "largest masking block"})
    crop_scale_min: float = field(default=0.2, metadata={"help": "lower area bound of the random resized crop"})
    image_mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN), metadata={"help": "student view mean"})
    image_std: List[float] = field(default_factory=lambda: list(CLIP_STD), metadata={"help": "student view std"})
    teacher_image_mean: List[float] = field(default_factory=lambda: list(CLIP_MEAN), metadata={"help": "teacher mean"})
    teacher_image_std: List[float] = field(default_factory=lambda: list(CLIP_STD), metadata={"help": "teacher std"})


@dataclass
class MIMPretrainArguments(EVATrainingArguments):
    """Training arguments with the EVA-02 MIM recipe's defaults."""

    learning_rate: float = field(default=1.5e-3, metadata={"help": "peak learning rate"})
    warmup_lr: float = field(default=1e-6, metadata={"help": "learning rate at the start of the linear warmup"})
    min_lr: float = field(default=1e-5, metadata={"help": "final learning rate of the cosine schedule"})
    warmup_epochs: float = field(default=1.0, metadata={"help": "warmup length in epochs (unless --warmup_steps)"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (matrices only)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon"})
    max_grad_norm: float = field(default=3.0, metadata={"help": "clip the all-reduced gradients to this norm"})
    num_train_epochs: float = field(default=100, metadata={"help": "training epochs"})
    save_epochs: float = field(default=1, metadata={"help": "checkpoint every this many epochs (0: use save_steps)"})
    tea_pretrained_model_path: Optional[str] = field(default=None, metadata={"help": "teacher weights to load"})
    stu_pretrained_model_path: Optional[str] = field(default=None, metadata={"help": "student weights to load"})
    only_save_updated_model: bool = field(default=True, metadata={"help": "save the student only"})


class MIMTrainer(EVATrainer):
    """Trainer for `EVA02ForPretrain`: the loss is the mean negative cosine over every masked token of the global
    batch (not a mean of per-rank means), so any data-parallel / sharding layout trains like one process."""

    def compute_loss(self, model, inputs, return_outputs=False):
        out = model(**inputs)
        pred, target = out["pred"].astype("float32"), out["target"].astype("float32")
        cos = (pred * target).sum(-1) / paddle.clip(pred.norm(axis=-1) * target.norm(axis=-1), min=1e-8)
        count = paddle.to_tensor([float(cos.shape[0])], dtype="float32")
        world = max(1, self.args.dataset_world_size)
        if world > 1:
            dist.all_reduce(count)  # every rank, including model-parallel copies of the same data
            count = count / max(1, self.args.world_size // world)
        loss = -cos.sum() / count.squeeze() * world
        return (loss, out) if return_outputs else loss


# ----------------------------------------------------------------------------------------- runner
def _config_fields(name_or_dir: str) -> dict:
    """The config fields of a zoo name or a saved model directory, as a plain dict."""
    import json

    from paddlemix_eva import zoo

    if os.path.isdir(name_or_dir):
        with open(os.path.join(name_or_dir, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    return dict(zoo.get_entry(name_or_dir).config)


def build_pretrain_model(model_args: MIMModelArguments, args: MIMPretrainArguments):
    """The composite as PaddleMIX builds it: `--model` (a zoo name or directory, whose composite weights load
    if it has any) as it is, or with `--model None` a teacher and student from `--teacher` / `--student`."""
    from paddlemix_eva import zoo
    from paddlemix_eva.models.eva02.pretrain import EVA02ForPretrain, EVA02ForPretrainConfig

    composite_dir = None
    if model_args.model and model_args.model != "None":
        composite = EVA02ForPretrain.config_class
        if os.path.isdir(model_args.model):
            config = composite.from_pretrained(model_args.model)
            composite_dir = model_args.model
        else:
            config = zoo.build_config(zoo.get_entry(model_args.model), composite)
        _warn_ignored_parts(model_args, config)
    else:
        config = EVA02ForPretrainConfig(teacher_config=model_args.teacher, student_config=None)
        if model_args.student:
            from_scratch = model_args.student_from_scratch
            config.student_config = _config_fields(model_args.student) if from_scratch else model_args.student
    if not config.teacher_config:
        raise ValueError("no teacher: give --model (a composite) or --teacher")
    model = EVA02ForPretrain(config)
    model.load_named_weights(composite_dir)
    if args.tea_pretrained_model_path:
        model.teacher.load_weights(args.tea_pretrained_model_path)
    if args.stu_pretrained_model_path:
        model.student.load_weights(args.stu_pretrained_model_path)
    if model_args.drop_path is not None:
        model.student.set_drop_path_rate(model_args.drop_path)
    model.save_student_only = args.only_save_updated_model
    if args.tensor_parallel_degree > 1:  # CUDA only (checked before); shards the loaded weights
        from paddlemix_eva.layers.tensor_parallel import shard_linears

        for part in (model.teacher, model.student):
            shard_linears(part)
        model.student.config.tensor_parallel_degree = args.tensor_parallel_degree
        model.student.config.tensor_parallel_rank = args.tensor_parallel_rank
    return model


def _warn_ignored_parts(model_args: MIMModelArguments, config) -> None:
    """PaddleMIX reads `--teacher` / `--student` only with `--model None`; its documented command passes them next
    to a composite `--model`, where they must not change what trains."""
    for flag, given, used in (("--teacher", model_args.teacher, config.teacher_config),
                              ("--student", model_args.student, config.student_config)):
        if given and given != used:
            logger.warning("%s %s is ignored: --model %s defines the %s (as in PaddleMIX); pass --model None to build "
                           "from --teacher / --student", flag, given, model_args.model, flag.lstrip("-"))


def run_mim_pretraining(model_args: MIMModelArguments, data_args: MIMDataArguments, args: MIMPretrainArguments):
    """Build everything from parsed arguments, check it, train (resuming if asked), save, log a summary."""
    prepare_run(args)
    if not data_args.data_path:
        raise ValueError("--data_path is required (an image folder or a file list)")
    seed_everything(args.seed)
    model = build_pretrain_model(model_args, args)
    student, teacher = model.student.config, model.teacher.visual.config
    if data_args.input_size and data_args.input_size != student.image_size:
        model.student.set_input_size(data_args.input_size)
        model.check_compatible()
    if data_args.second_input_size and data_args.second_input_size != teacher.image_size:
        raise ValueError(f"--second_input_size {data_args.second_input_size}: the teacher was built for "
                         f"{teacher.image_size} px")
    dataset = MIMPretrainDataset(
        data_args.data_path,
        input_size=student.image_size,
        second_input_size=teacher.image_size,
        patch_size=student.patch_size,
        num_mask_patches=data_args.num_mask_patches,
        min_mask_patches_per_block=data_args.min_mask_patches_per_block,
        max_mask_patches_per_block=data_args.max_mask_patches_per_block,
        crop_scale=(data_args.crop_scale_min, 1.0),
        mean=data_args.image_mean,
        std=data_args.image_std,
        teacher_mean=data_args.teacher_image_mean,
        teacher_std=data_args.teacher_image_std,
        seed=args.seed,
    )
    apply_save_epochs(args, len(dataset))
    trainer = MIMTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate_mim)
    return trainer, train_and_save(trainer, "MIM pre-training", len(dataset))
