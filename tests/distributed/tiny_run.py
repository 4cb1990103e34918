"""A tiny `EVATrainer` run in its own process (alone or under `paddle.distributed.launch`), with at most one
injected fault. Test instrumentation for the fault tests: the faults are real (a SIGKILL in the middle of writing
a checkpoint file, a file-size limit the kernel enforces, a loss that is NaN on one rank), only their timing is
arranged here.

    python tiny_run.py OUT_DIR [--max_steps N] [--save_steps N] [--resume]
        [--kill_in_save STEP:FILE]      SIGKILL after writing half of FILE of checkpoint-STEP
        [--fsize_limit_after STEP:BYTES]  from step STEP on, files may not grow past BYTES (RLIMIT_FSIZE)
        [--nan_loss STEPS[@RANK]]       the loss is NaN at these 1-based global steps (comma list), on RANK only
"""
import argparse
import json
import os
import resource
import signal

import numpy as np

import paddlemix_eva  # noqa: F401  (before paddle)

# isort: split
import paddle
import paddle.nn as nn
from paddlenlp.trainer import TrainerCallback

from paddlemix_eva.trainer.base import EVATrainer, EVATrainingArguments
from paddlemix_eva.utils.errors import exit_on_bad_input
from paddlemix_eva.utils.runtime import leave_distributed_run


class TinyRegressor(nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 64)
        self.fc2 = nn.Linear(64, 1)
        self.poisoned = False

    def forward(self, x, labels):
        loss = ((self.fc2(paddle.tanh(self.fc1(x))) - labels) ** 2).mean()
        return loss * float("nan") if self.poisoned else loss


class Regression(paddle.io.Dataset):
    def __init__(self, n: int = 64):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, 16)).astype(np.float32)
        self.y = np.tanh(self.x @ rng.standard_normal((16, 1))).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Faults(TrainerCallback):
    def __init__(self, model, nan_steps, nan_rank, fsize_limit):
        self.model, self.nan_steps, self.nan_rank, self.fsize_limit = model, nan_steps, nan_rank, fsize_limit

    def on_step_begin(self, args, state, control, **kwargs):
        step = state.global_step + 1
        rank = paddle.distributed.get_rank() if paddle.distributed.is_initialized() else 0
        self.model.poisoned = step in self.nan_steps and self.nan_rank in (None, rank)
        if self.fsize_limit and step >= self.fsize_limit[0]:
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (self.fsize_limit[1], resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    def on_step_end(self, args, state, control, **kwargs):
        if args.should_save and not self.fsize_limit:  # the parameters after every step, for the tests to compare
            params = {k: v.numpy().tolist() for k, v in self.model.state_dict().items()}
            with open(os.path.join(args.output_dir, f"params-{state.global_step}.json"), "w") as f:
                json.dump(params, f)


def kill_inside(step: int, filename: str) -> None:
    """Let `paddle.save` write half of `filename` of checkpoint-`step`, then SIGKILL the process."""
    real_save = paddle.save

    def save(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        if f"checkpoint-{step}" in str(path) and os.path.basename(str(path)) == filename:
            os.truncate(path, os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    paddle.save = save


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--max_steps", type=int, default=8)
    parser.add_argument("--save_steps", type=int, default=4)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill_in_save", default=None)
    parser.add_argument("--fsize_limit_after", default=None)
    parser.add_argument("--nan_loss", default="")
    opts = parser.parse_args()
    if paddle.distributed.get_world_size() > 1:
        paddle.distributed.init_parallel_env()
    if opts.kill_in_save:
        step, filename = opts.kill_in_save.split(":")
        kill_inside(int(step), filename)
    steps, _, rank = opts.nan_loss.partition("@")
    nan_steps = {int(s) for s in steps.split(",") if s}
    limit = tuple(int(v) for v in opts.fsize_limit_after.split(":")) if opts.fsize_limit_after else None
    paddle.seed(0)
    model = TinyRegressor()
    args = EVATrainingArguments(
        output_dir=opts.out_dir, max_steps=opts.max_steps, save_steps=opts.save_steps, logging_steps=1,
        per_device_train_batch_size=8 // max(1, paddle.distributed.get_world_size()), learning_rate=0.05,
        warmup_steps=2, min_lr=0.001, weight_decay=0.05, tensorboard=False, seed=0, disable_tqdm=True,
        dataloader_num_workers=0)
    trainer = EVATrainer(model=model, args=args, train_dataset=Regression())
    trainer.add_callback(Faults(model, nan_steps, int(rank) if rank else None, limit))
    trainer.train(resume_from_checkpoint=True if opts.resume else None)
    trainer.save_model()


if __name__ == "__main__":
    exit_on_bad_input(main)
    leave_distributed_run()
