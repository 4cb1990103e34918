"""What every paddlemix-eva trainer adds to PaddleNLP's `Trainer`: upstream's optimizer, schedules and sampling,
run checks, atomic checkpoints and richer logs. Subclasses override `compute_loss` (and `lr_scale_for`)."""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import math
import os
import random
import shutil
import sys
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import paddle
import paddle.nn as nn
from paddlenlp.trainer import PdArgumentParser, Trainer, TrainerCallback, TrainingArguments
from paddlenlp.trainer.integrations import VisualDLCallback
from paddlenlp.trainer.trainer_utils import IntervalStrategy, TrainOutput, get_last_checkpoint

from paddlemix_eva.data.datasets import GlobalBatchSampler
from paddlemix_eva.trainer.callbacks import GradNormMonitor, NonFiniteGuard, SafeVisualDLCallback
from paddlemix_eva.trainer.optim import apply_lr_scales, decayed_parameter_names
from paddlemix_eva.trainer.schedules import WarmupCosineLR, WeightDecaySchedule
from paddlemix_eva.utils import compat, processes
from paddlemix_eva.utils.errors import (
    OneLineParserMixin,
    TrainingStopped,
    check_at_least_one,
    check_parsed_arguments,
    check_writable_dir,
)
from paddlemix_eva.utils.logs import third_party_quiet
from paddlemix_eva.utils.runtime import configure_training_runtime, leave_distributed_run
from paddlemix_eva.utils.serialization import verify_checkpoint_dir

logger = logging.getLogger(__name__)


@dataclass
class EVATrainingArguments(TrainingArguments):
    """PaddleNLP's training arguments plus the knobs of the EVA recipes (PaddleMIX flag names)."""

    warmup_lr: float = field(default=0.0, metadata={"help": "learning rate at the start of the linear warmup"})
    min_lr: float = field(default=0.0, metadata={"help": "final learning rate of the cosine schedule"})
    warmup_epochs: float = field(default=0.0, metadata={"help": "warmup length in epochs (unless --warmup_steps)"})
    weight_decay_end: Optional[float] = field(default=None, metadata={"help": "final weight decay (cosine schedule)"})
    save_epochs: float = field(default=0, metadata={"help": "checkpoint every this many epochs (0: use save_steps)"})
    accum_freq: int = field(default=1, metadata={"help": "micro-batches accumulated per optimizer step"})
    dp_degree: int = field(default=-1, metadata={"help": "data-parallel degree; -1 = what the launch implies"})
    tensorboard: bool = field(default=True, metadata={"help": "log to VisualDL (in output_dir/runs)"})
    dataloader_drop_last: bool = field(default=True, metadata={"help": "drop the last incomplete global batch"})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "cosine (linear warmup from --warmup_lr, then cosine to --min_lr): "
                                            "the only schedule of the EVA recipes"})
    max_nonfinite_steps: int = field(
        default=3, metadata={"help": "stop after this many optimizer steps in a row with a non-finite loss or "
                                     "gradient norm (each is skipped)"})
    resume_from_checkpoint: Optional[str] = field(
        default=None, metadata={"help": "resume a run: `last` (or `true`) for the newest complete checkpoint-N in "
                                        "--output_dir, or the path of a checkpoint directory"})

    def __post_init__(self):
        # before PaddleNLP's own set-up: a zero batch would divide by zero there, a bad output_dir fail at the end
        check_at_least_one(self.per_device_train_batch_size, "--per_device_train_batch_size")
        check_at_least_one(self.per_device_eval_batch_size, "--per_device_eval_batch_size")
        if self.output_dir:
            check_writable_dir(self.output_dir, "--output_dir")
        # PaddleNLP resets the parallel degrees to -1 in a single process; keep what was asked to check it
        self.requested_tensor_parallel_degree = self.tensor_parallel_degree
        self.requested_sharding = str(self.sharding or "").split() if isinstance(self.sharding, str) else []
        super().__post_init__()
        if not self.tensorboard:
            self.report_to = []


def seed_everything(seed: int) -> None:
    """Same seed in every process before the model is built, so its initial weights do not depend on the
    launch (data parallel then starts all ranks from rank 0's identical copy anyway)."""
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
            "drop the flag to run in float32 on this machine"
        )
    sharding = list(getattr(args, "sharding", None) or []) + list(getattr(args, "requested_sharding", []))
    stages = sorted({str(getattr(s, "value", s)) for s in sharding} - {"stage1", "offload"})
    if stages:
        raise ValueError(
            f"--sharding {' '.join(stages)}: Paddle's group-sharded stages 2 and 3 run on GPU / XPU devices only "
            "(paddle.distributed.sharding.group_sharded_parallel); on CPU use --sharding stage1, which shards the "
            "optimizer state the same way across --sharding_parallel_degree processes"
        )
    requested_tp = max(getattr(args, "tensor_parallel_degree", 1), getattr(args, "requested_tensor_parallel_degree", 1))
    if requested_tp > 1:
        raise ValueError(
            f"--tensor_parallel_degree {requested_tp} needs GPUs: fleet's tensor-parallel layers have no CPU kernels. "
            "On CPU use data parallel (--dp_degree) and/or --sharding stage1"
        )


def check_run_arguments(args: EVATrainingArguments) -> None:
    """Refuse layouts that cannot run, before any work starts (changes nothing; `prepare_run` then sets up)."""
    check_device_arguments(args)
    implied = max(1, args.world_size) // max(
        1, args.tensor_parallel_degree * args.pipeline_parallel_degree * args.sharding_parallel_degree
    )
    if args.dp_degree not in (-1, implied):
        raise ValueError(
            f"--dp_degree {args.dp_degree} does not match the launch: {args.world_size} processes / (tensor "
            f"{args.tensor_parallel_degree} x pipeline {args.pipeline_parallel_degree} x sharding "
            f"{args.sharding_parallel_degree}) = {implied}"
        )
    if args.pipeline_parallel_degree > 1:
        raise ValueError("pipeline parallel is not supported by the EVA recipes")
    if str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) != "cosine":
        raise ValueError(f"--lr_scheduler_type {args.lr_scheduler_type.value}: the EVA recipes schedule the learning "
                         "rate as linear warmup (--warmup_lr, --warmup_epochs/--warmup_steps) then cosine to --min_lr; "
                         "pass cosine or leave the flag out")
    if args.accum_freq > 1 and args.gradient_accumulation_steps not in (1, args.accum_freq):
        raise ValueError("--accum_freq and --gradient_accumulation_steps disagree; give one of them")


def prepare_run(args: EVATrainingArguments) -> None:
    """`check_run_arguments`, then what every run sets up: `--accum_freq` as gradient accumulation and the training
    runtime of this process (`configure_training_runtime`)."""
    check_run_arguments(args)
    if args.accum_freq > 1:
        args.gradient_accumulation_steps = args.accum_freq
    configure_training_runtime()


def effective_batch_size(args: EVATrainingArguments) -> int:
    """Samples per optimizer step: per-device batch x gradient accumulation x data-parallel ranks."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.dataset_world_size)


def apply_save_epochs(args: EVATrainingArguments, num_samples: int) -> int:
    """Translate `--save_epochs` into save steps for a dataset of `num_samples`; returns the steps per epoch."""
    steps_per_epoch = max(1, num_samples // effective_batch_size(args))
    if args.save_epochs > 0:
        args.save_strategy = IntervalStrategy.STEPS
        args.save_steps = max(1, int(round(args.save_epochs * steps_per_epoch)))
    return steps_per_epoch


#: PaddleNLP training flags every run may need, shown by `--help` (with these shorter help lines) next to the
#: script's own flags; PaddleNLP's others wait behind --help-all
COMMON_TRAINING_FLAGS = {
    "output_dir": "where checkpoints, logs and the final model are written",
    "overwrite_output_dir": "start afresh in an --output_dir that holds checkpoints",
    "per_device_train_batch_size": "training images per device and step",
    "per_device_eval_batch_size": "evaluation images per device and step",
    "num_train_epochs": "training epochs",
    "max_steps": "optimizer steps in all (> 0: overrides --num_train_epochs)",
    "learning_rate": "peak learning rate",
    "weight_decay": "weight decay",
    "warmup_steps": "warmup length in optimizer steps (0: --warmup_epochs)",
    "max_grad_norm": "clip gradients to this global norm (0: off)",
    "seed": "random seed (weights, data order, augmentation)",
    "logging_steps": "log the loss every this many steps",
    "save_steps": "checkpoint every this many steps (unless --save_epochs)",
    "save_total_limit": "keep only the newest this many checkpoints",
    "dataloader_num_workers": "image decoding processes per device (0: in the training process)",
    "fp16": "float16 mixed precision (CUDA only)",
    "bf16": "bfloat16 mixed precision (CUDA only)",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help one line per flag where it fits: 120 columns unless the terminal says otherwise."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=40, width=shutil.get_terminal_size((120, 24)).columns)

    def _get_help_string(self, action):
        if action.default is None or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _HelpAllAction(argparse.Action):
    """`--help-all`: the help with PaddleNLP's training flags too."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.show_all_flags()
        parser.print_help()
        parser.exit()


def own_fields(dtype: type) -> set:
    """The fields of an argument dataclass declared by paddlemix-eva or the script (not inherited unchanged from
    PaddleNLP's TrainingArguments): what `--help` shows."""
    names = set()
    for klass in dtype.__mro__:
        if not klass.__module__.startswith("paddlenlp"):
            names.update(klass.__dict__.get("__annotations__", {}))
    return names


class ArgumentParser(OneLineParserMixin, PdArgumentParser):
    """PaddleNLP's dataclass parser, with: the literal `None` as None for an optional field (PaddleMIX's
    documented commands pass e.g. `--pretrained_model_path None`); a short `--help` (the script's own flags, the
    EVA additions and the common run flags; `--help-all` adds PaddleNLP's ~200 others); an unknown flag refused
    with the closest known one; usage errors as one line."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        kwargs.setdefault("usage", "%(prog)s [--flag VALUE ...]")
        super().__init__(dataclass_types, **kwargs)
        optional = set()
        for dtype in self.dataclass_types:
            hints = typing.get_type_hints(dtype)
            optional.update(f.name for f in dataclasses.fields(dtype) if type(None) in typing.get_args(hints[f.name]))
        for action in self._actions:
            if action.dest in optional:
                action.type = _none_or(action.type or str)
        self._hidden_help: dict = {}
        self._arrange_help()

    def _arrange_help(self) -> None:
        """One section per argument dataclass with its own flags (and the common run flags) in declaration order;
        PaddleNLP's other flags last, hidden until `--help-all`."""
        self.add_argument("--help-all", action=_HelpAllAction, dest=argparse.SUPPRESS,
                          help="show this help with PaddleNLP's other training flags too, and exit")
        by_dest: dict = {}
        for action in self._actions:
            if action.dest not in ("help", argparse.SUPPRESS):
                by_dest.setdefault(action.dest, []).append(action)
        for group in self._action_groups:
            group._group_actions[:] = [a for a in group._group_actions
                                       if a.dest in ("help", argparse.SUPPRESS)]
        for dtype in self.dataclass_types:
            own = own_fields(dtype)
            fields = [f.name for f in dataclasses.fields(dtype) if f.init and (f.name in own or
                                                                              f.name in COMMON_TRAINING_FLAGS)]
            for name in set(fields) - own:
                for action in by_dest.get(name, []):
                    action.help = COMMON_TRAINING_FLAGS[name]
            if fields:
                group = self.add_argument_group(_section_title(dtype))
                for name in fields:
                    group._group_actions.extend(self._shown(by_dest.pop(name, [])))
        rest = [a for actions in by_dest.values() for a in actions]
        if rest:
            group = self.add_argument_group("PaddleNLP's other training flags")
            group._group_actions.extend(rest)
            for action in rest:
                self._hidden_help[action] = action.help
                action.help = argparse.SUPPRESS
            self.epilog = (f"{len(rest)} more flags of PaddleNLP's TrainingArguments (logging, saving, evaluation, "
                           "distributed, precision, ...): --help-all")

    def _shown(self, actions: list) -> list:
        """A flag's actions as `--help` lists them: typed metavars; the `--no_X` twin of a boolean hidden."""
        for action in actions:
            if action.option_strings and action.option_strings[0].startswith("--no_"):
                self._hidden_help[action] = action.help
                action.help = argparse.SUPPRESS
            elif action.metavar is None and action.choices is None and action.type is not None:
                name = getattr(action.type, "__name__", "value")
                action.metavar = {"strtobool": "BOOL", "str": "TEXT"}.get(name, name.upper())
        return actions

    def show_all_flags(self) -> None:
        for action, help_text in self._hidden_help.items():
            action.help = help_text
        self.epilog = None


def _section_title(dtype: type) -> str:
    """The first line of an argument dataclass's docstring (its name when it has none of its own)."""
    doc = (dtype.__doc__ or "").strip()
    first = doc.splitlines()[0].rstrip(".:") if doc and not doc.startswith(f"{dtype.__name__}(") else ""
    return first if first and len(first) <= 100 else dtype.__name__


def _none_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str):
        return None if text == "None" else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its errors
    return parse_or_none


@dataclass
class OutputArguments:
    """Console output"""

    verbose: bool = field(default=False, metadata={"help": "also show Paddle's / PaddleNLP's own messages and "
                                                           "DEBUG logs (default: progress, metrics, warnings)"})


def run_from_command_line(runner, *argument_classes: type):
    """Entry point of the example scripts: parse the argument dataclasses (model, data, training) from the
    command line with PaddleNLP's parser, set up the console output (`--verbose`), then call `runner` with them;
    bad input (also a value the dataclasses refuse) exits with its message (`errors.exit_on_bad_input`)."""
    from paddlemix_eva.utils.errors import exit_on_bad_input
    from paddlemix_eva.utils.logs import setup_logging, verbose_requested

    setup_logging(verbose_requested(sys.argv[1:]))
    processes.end_with_launcher()  # a rank of paddle.distributed.launch ends with the launcher, even SIGKILLed

    def parse_and_run():
        *parsed, output = ArgumentParser(argument_classes + (OutputArguments,)).parse_args_into_dataclasses()
        for arguments in parsed:
            check_parsed_arguments(arguments)
        return runner(*parsed)

    result = exit_on_bad_input(parse_and_run)
    leave_distributed_run()
    return result


def train_and_save(trainer: Trainer, title: str, num_samples: int) -> dict:
    """Train (resuming from `--resume_from_checkpoint` if given), save the model, the train metrics and the trainer
    state (log history), and log a one-line summary (steps, epochs, throughput, this run's mean loss and its first
    and last logged loss); returns the train metrics (`train_loss`: the mean over this run's steps, see
    `EVATrainer.run_metrics`)."""
    args = trainer.args
    start = time.time()
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()  # trainer_state.json beside the model: the whole log history (losses, evaluations)
    first = result.metrics.get("train_first_step", 1)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e and e.get("step", first) >= first]
    logger.info("%s done: %d steps (%.2f epochs of %d samples, effective batch %d) in %.0f s, %.1f samples/s; "
                "%s, logged loss %s -> %s; %s", title, trainer.state.global_step,
                trainer.state.epoch or 0.0, num_samples, effective_batch_size(args), time.time() - start,
                result.metrics.get("train_samples_per_second", math.nan), run_loss_summary(result.metrics),
                f"{losses[0]:.4f}" if losses else "n/a", f"{losses[-1]:.4f}" if losses else "n/a", saved_in(args))
    return result.metrics


def saved_in(args: TrainingArguments, directory: Optional[str] = None) -> str:
    """`saved in DIR` on the rank that writes the run's files (PaddleNLP's `should_save`), `saved by another rank`
    on the others: a multi-process or multi-node run's logs name a directory only where it was written."""
    if args.should_save:
        return f"saved in {directory or args.output_dir}"
    return "saved by another rank"


def run_loss_summary(metrics: dict) -> str:
    """`train_loss 0.8159 (mean over steps 41-53, this run's)` from the metrics of `EVATrainer.train`."""
    first, last = metrics.get("train_first_step"), metrics.get("train_last_step")
    if "train_loss" not in metrics or first is None or last is None or last < first:
        return "train_loss n/a (no step taken)"
    span = f"step {first}" if first == last else f"steps {first}-{last}"
    return f"train_loss {metrics['train_loss']:.4f} (mean over {span}, this run's)"


class _RunBegin(TrainerCallback):
    """Calls `EVATrainer.begin_run` at train begin: the checkpoint's trainer state is loaded and the run's length
    known, but no batch has been loaded and no step taken. Registered first, so a refused run starts nothing."""

    def __init__(self, trainer: "EVATrainer"):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.begin_run(state)


class EVATrainer(Trainer):
    """PaddleNLP `Trainer` with: weight decay only where upstream applies it (see `optim.decays`), per-parameter
    learning-rate scales (`lr_scale_for`), linear warmup from `warmup_lr` then cosine to `min_lr`, cosine weight
    decay, global batches independent of the process count, grad norm in the logs, atomic checkpoints, exact
    resumes (`begin_run`) and a `train_loss` that is this run's mean (`run_metrics`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.pop_callback(VisualDLCallback) is not None:
            self.add_callback(SafeVisualDLCallback())
        self.grad_norm = GradNormMonitor()
        self.add_callback(self.grad_norm)
        self.nonfinite_guard = NonFiniteGuard(self.grad_norm, self.args.max_nonfinite_steps)
        self.add_callback(self.nonfinite_guard)
        self.wd_schedule: Optional[WeightDecaySchedule] = None
        self.train_sampler: Optional[GlobalBatchSampler] = None
        self._verified_checkpoints: set = set()  # resumed checkpoints already read with the restricted unpickler
        self._resume_checkpoint: Optional[str] = None  # the checkpoint this run resumes from
        self.run_start_step = 0  # the global step this run started from (the checkpoint's, or 0)
        self.callback_handler.callbacks.insert(0, _RunBegin(self))

    # ---------------------------------------------------------------------------------- data
    def get_train_dataloader(self):
        """PaddleNLP's loader, its workers bound to this process (`processes.bind_workers`): they end with it
        however it ends, also through `leave_distributed_run`'s exit without teardown or a SIGKILL."""
        return processes.bind_workers(super().get_train_dataloader())

    def get_eval_dataloader(self, eval_dataset=None):
        return processes.bind_workers(super().get_eval_dataloader(eval_dataset))

    def get_test_dataloader(self, test_dataset):
        return processes.bind_workers(super().get_test_dataloader(test_dataset))

    def _get_train_sampler(self):
        self.train_sampler = GlobalBatchSampler(
            self.train_dataset,
            batch_size=self.args.per_device_train_batch_size,
            num_replicas=max(1, self.args.dataset_world_size),
            rank=max(0, self.args.dataset_rank),
            shuffle=True,
            seed=self.args.seed,
            drop_last=self.args.dataloader_drop_last,
        )
        return self.train_sampler

    # ------------------------------------------------------------------------- optimization
    def lr_scale_for(self, name: str) -> float:
        return 1.0

    def optimizer_class_and_kwargs(self) -> tuple:
        """(optimizer class, its keyword arguments but the rate, parameters and clipping): PaddleNLP's AdamW with
        weight decay only where upstream applies it (`optim.decays`). Recipes override it (EVA-CLIP: LAMB and a
        coefficient per tower)."""
        model = getattr(self.model, "_layers", self.model)
        decayed = decayed_parameter_names(model)
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args)
        optimizer_kwargs.update(apply_decay_param_fun=lambda name: name in decayed, weight_decay=self.args.weight_decay)
        return optimizer_cls, optimizer_kwargs

    def create_optimizer(self, lr_scheduler=None):
        """The optimizer of `optimizer_class_and_kwargs` with per-parameter LR scales (`lr_scale_for`) and global
        norm clipping; frozen parameters (stop_gradient) are left out."""
        if self.optimizer is None:
            model = getattr(self.model, "_layers", self.model)
            apply_lr_scales(model, self.lr_scale_for)
            optimizer_cls, optimizer_kwargs = self.optimizer_class_and_kwargs()
            if hasattr(optimizer_cls, "_create_master_weight") and self.args.fp16_opt_level == "O2":
                optimizer_kwargs["multi_precision"] = True
            max_norm = self.args.max_grad_norm
            self.optimizer = optimizer_cls(
                learning_rate=self.lr_scheduler if lr_scheduler is None else lr_scheduler,
                parameters=[p for p in model.parameters() if not p.stop_gradient],
                grad_clip=nn.ClipGradByGlobalNorm(max_norm) if max_norm > 0 else None,
                **optimizer_kwargs,
            )
            decayed = len(decayed_parameter_names(model))
            logger.info("optimizer %s: weight decay on %d of %d trainable tensors", optimizer_cls.__name__,
                        decayed, len(compat.optimizer_parameters(self.optimizer)))
        return self.optimizer

    def create_scheduler(self, num_training_steps: int):
        if self.lr_scheduler is None:
            batches = len(self.train_sampler) if self.train_sampler is not None else num_training_steps
            steps_per_epoch = max(1, batches // self.args.gradient_accumulation_steps)
            warmup = self.args.warmup_steps or int(round(self.args.warmup_epochs * steps_per_epoch))
            if warmup >= num_training_steps > 0:
                logger.warning("the warmup (%d steps) is as long as the whole run (%d steps): the learning rate rises "
                               "from %g and never reaches --learning_rate %g; shorten --warmup_epochs/--warmup_steps",
                               warmup, num_training_steps, self.args.warmup_lr, self.args.learning_rate)
            self.lr_scheduler = WarmupCosineLR(
                self.args.learning_rate, num_training_steps, warmup, self.args.warmup_lr, self.args.min_lr
            )
            wd_end = self.args.weight_decay if self.args.weight_decay_end is None else self.args.weight_decay_end
            self.wd_schedule = WeightDecaySchedule(self.args.weight_decay, wd_end, num_training_steps)
            self.add_callback(self.wd_schedule)
            logger.info("schedule: %d steps (%d per epoch), %d warmup from %g, cosine %g -> %g; weight decay %g -> %g",
                        num_training_steps, steps_per_epoch, warmup, self.args.warmup_lr, self.args.learning_rate,
                        self.args.min_lr, self.args.weight_decay, wd_end)
        return self.lr_scheduler

    def training_step(self, model, inputs):
        """PaddleNLP's step, with the backward skipped (on every rank) when the loss is not finite: the optimizer
        step that follows is then skipped too (`NonFiniteGuard`)."""
        if self.args.pipeline_parallel_degree > 1:
            return super().training_step(model, inputs)
        model.train()
        inputs = self._prepare_inputs(inputs)
        with self.autocast_smart_context_manager():
            loss = self.compute_loss(model, inputs)
        if self.args.gradient_accumulation_steps > 1 and not self._enable_delay_scale_loss():
            loss = loss / self.args.gradient_accumulation_steps
        if not self.nonfinite_guard.loss_is_finite(loss):
            return paddle.zeros_like(loss.detach())
        if self.do_grad_scaling:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        return loss.detach()

    def log(self, logs, **kwargs):
        if "train_loss" in logs and "train_runtime" in logs:  # PaddleNLP's end-of-training metrics
            logs.update(self.run_metrics(logs["train_runtime"]))
        if "loss" in logs and self.grad_norm.value is not None:
            logs["grad_norm"] = round(self.grad_norm.value, 6)
        if "loss" in logs and self.wd_schedule is not None:
            logs["weight_decay"] = round(self.wd_schedule.value(self.state.global_step), 8)
        super().log(logs, **kwargs)
        if self.args.should_log and third_party_quiet():  # else PaddleNLP prints the same line itself
            logger.info("%s", format_metrics(logs, self.state.global_step, self.state.max_steps))

    # ---------------------------------------------------------------------------- resuming
    def resolve_checkpoint(self, resume_from_checkpoint):
        """A checkpoint directory for `--resume_from_checkpoint`: a path as given, or True / "true" / "last" for
        the newest complete `checkpoint-N` in output_dir (staging folders of an interrupted save never count)."""
        if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() in ("true", "last"):
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            if last is None:
                raise FileNotFoundError(f"--resume_from_checkpoint: no complete checkpoint-N in {self.args.output_dir}")
            logger.info("resuming from %s", last)
            return last
        if resume_from_checkpoint and not os.path.isdir(str(resume_from_checkpoint)):
            raise FileNotFoundError(f"--resume_from_checkpoint: {resume_from_checkpoint} is not a directory")
        return resume_from_checkpoint or None

    def train(self, resume_from_checkpoint=None, **kwargs):
        """PaddleNLP's training; the returned `training_loss` / `metrics["train_loss"]` are this run's mean loss
        (`run_metrics`)."""
        checkpoint = self.resolve_checkpoint(resume_from_checkpoint)
        self._resume_checkpoint = checkpoint if isinstance(checkpoint, str) else None
        output = super().train(resume_from_checkpoint=checkpoint, **kwargs)
        return TrainOutput(output.global_step, output.metrics.get("train_loss", output.training_loss), output.metrics)

    def begin_run(self, state) -> None:
        """At train begin (`_RunBegin`): note where this run starts; when resuming, refuse a checkpoint at or past
        the end of this run, and restore the checkpoint's RNG states (Python, numpy, Paddle: dropout and drop path
        draw from Paddle's). PaddleNLP restores them itself only after skipping the batches of a partly trained
        epoch (again then, to the same states), never when the checkpoint ends an epoch; here it happens before
        the epoch's first batch either way, as in the uninterrupted run."""
        self.run_start_step = int(state.global_step)
        checkpoint = self._resume_checkpoint
        if checkpoint is None:
            return
        if state.global_step >= state.max_steps:
            length = (f"--max_steps {self.args.max_steps}" if self.args.max_steps > 0 else
                      f"--num_train_epochs {self.args.num_train_epochs:g}")
            raise ValueError(
                f"--resume_from_checkpoint {checkpoint}: the checkpoint is at step {state.global_step} but this run "
                f"ends at {state.max_steps} steps ({length}); raise --num_train_epochs or --max_steps beyond "
                f"{state.global_step} to train on from it"
            )
        self._load_rng_state(checkpoint)

    def run_metrics(self, runtime: float) -> dict:
        """What PaddleNLP's end-of-training metrics mean for this run alone: `train_loss` is the mean training loss
        over the optimizer steps this run took (`train_first_step`..`train_last_step`, after the checkpoint it
        resumed from; PaddleNLP divides the sum of this run's losses by the global step, previous runs' steps
        included); throughput counts this run's steps and samples."""
        steps = self.state.global_step - self.run_start_step
        total = getattr(self, "_total_loss_scalar", math.nan)  # PaddleNLP's sum of this run's per-step losses
        samples = steps * effective_batch_size(self.args)
        return {
            "train_loss": total / steps if steps > 0 else math.nan,
            "train_first_step": self.run_start_step + 1,
            "train_last_step": int(self.state.global_step),
            "train_samples_per_second": round(samples / runtime, 4) if runtime > 0 else math.nan,
            "train_steps_per_second": round(steps / runtime, 4) if runtime > 0 else math.nan,
        }

    def _load_from_checkpoint(self, resume_from_checkpoint=None):
        """Before PaddleNLP `paddle.load`s a checkpoint's pickles (model, optimizer, scheduler, RNG states), read
        each with the restricted unpickler: a file that would run code is refused, naming it."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        self._verify_checkpoint(checkpoint)
        return super()._load_from_checkpoint(resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        """Verified too: with sharding stage1 PaddleNLP loads the optimizer before the model."""
        self._verify_checkpoint(checkpoint)
        return super()._load_optimizer_and_scheduler(checkpoint)

    def _verify_checkpoint(self, checkpoint) -> None:
        if isinstance(checkpoint, str) and checkpoint not in self._verified_checkpoints:
            verify_checkpoint_dir(checkpoint)
            self._verified_checkpoints.add(checkpoint)

    # ------------------------------------------------------------------------------ saving
    def _save_checkpoint(self, model, metrics=None):
        """Checkpoints are written atomically: every rank writes into `output_dir/.staging-checkpoint-N`, which
        becomes `checkpoint-N` by one rename once all files are complete. A run killed while saving leaves only
        the staging folder, which resuming never picks up (and the next save clears)."""
        final_root = self.args.output_dir
        name = f"checkpoint-{self.state.global_step}"
        check_finite_parameters(self.model, name)
        staging_root = os.path.join(final_root, f".staging-{name}")
        if self.args.should_save and os.path.isdir(staging_root):
            shutil.rmtree(staging_root)
        self._barrier()
        self.args.output_dir = staging_root
        refused: Optional[OSError] = None
        try:
            super()._save_checkpoint(model, metrics=metrics)
        except OSError as err:
            if err.errno not in _DISK_FULL_ERRNOS:
                raise
            refused = err
        finally:
            self.args.output_dir = final_root
        if not self._all_ranks_agree(refused is None):
            shutil.rmtree(staging_root, ignore_errors=True)
            previous = get_last_checkpoint(final_root)
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            raise TrainingStopped(
                f"{name} could not be written to {final_root} ({refused or 'another rank could not write its part'});"
                f" {kept}. Free space there (or give another --output_dir) and resume with --resume_from_checkpoint"
            ) from refused
        if self.args.should_save:
            target = os.path.join(final_root, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging_root, name), target)
            shutil.rmtree(staging_root, ignore_errors=True)
            if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(staging_root):
                self.state.best_model_checkpoint = target
            self._rotate_checkpoints(use_mtime=True, output_dir=final_root)
            logger.info("%s written to %s", name, target)
        self._barrier()

    def save_model(self, output_dir: Optional[str] = None, merge_tensor_parallel: Optional[bool] = False):
        check_finite_parameters(self.model, output_dir or self.args.output_dir)
        super().save_model(output_dir, merge_tensor_parallel)

    def _barrier(self) -> None:
        if self.args.world_size > 1:
            paddle.distributed.barrier()

    def _all_ranks_agree(self, ok: bool) -> bool:
        """True when `ok` holds on every rank (one all-reduce; all ranks must call it)."""
        if self.args.world_size <= 1:
            return ok
        flag = paddle.to_tensor([1.0 if ok else 0.0])
        paddle.distributed.all_reduce(flag, op=paddle.distributed.ReduceOp.MIN)
        return bool(float(flag) == 1.0)


def format_metrics(logs: dict, step: int, max_steps: int) -> str:
    """One line per logged step: `step 12/24: loss 0.4321, learning_rate 0.0012, grad_norm 0.53, ...`."""
    shown = []
    for key, value in logs.items():
        if key in ("global_step", "progress_or_epoch", "interval_runtime", "interval_steps_per_second"):
            continue
        key = {"interval_samples_per_second": "samples/s"}.get(key, key)
        shown.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return f"step {step}/{max_steps}: " + ", ".join(shown)


#: what a full (or quota- / size-limited) file system answers to a write
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def check_finite_parameters(model, destination: str) -> None:
    """Refuse to save weights that hold NaN or inf (they would overwrite a good checkpoint with a useless one)."""
    layer = getattr(model, "_layers", model)
    bad = [name for name, param in layer.named_parameters() if not bool(paddle.isfinite(param).all())]
    if bad:
        raise TrainingStopped(
            f"not saving {destination}: {len(bad)} parameters hold NaN or inf (e.g. {bad[:3]}); the previous "
            "checkpoint is kept. Resume from it with a lower --learning_rate or gradient clipping (--max_grad_norm)"
        )
