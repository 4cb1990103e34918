"""Per-step schedules of the EVA recipes: cosine learning rate with linear warmup, cosine weight decay."""
from __future__ import annotations

import math

from paddle.optimizer.lr import LRScheduler
from paddlenlp.trainer import TrainerCallback

from paddlemix_eva.utils import compat


def warmup_cosine(step: int, base: float, final: float, total: int, warmup: int, warmup_start: float) -> float:
    """Linear warmup from `warmup_start` to `base` over `warmup` steps, then cosine from `base` to `final` at
    `total`; constant `final` beyond (a run longer than planned never indexes past the schedule)."""
    if step < warmup:
        return warmup_start + (base - warmup_start) * step / warmup
    if step >= total:
        return final
    progress = (step - warmup) / max(1, total - warmup)
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR(LRScheduler):
    """`warmup_cosine` as a Paddle scheduler stepped once per optimizer step; its position (`last_epoch`) is saved
    with the checkpoint, so a resumed run continues the schedule where it stopped."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0, warmup_lr: float = 0.0,
                 min_lr: float = 0.0):
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.warmup_lr, self.min_lr = float(warmup_lr), float(min_lr)
        super().__init__(learning_rate=base_lr)

    def get_lr(self) -> float:
        return warmup_cosine(self.last_epoch, self.base_lr, self.min_lr, self.total_steps, self.warmup_steps,
                             self.warmup_lr)


class WeightDecaySchedule(TrainerCallback):
    """Cosine weight decay from `start` to `end` over the run (upstream's `weight_decay_end`), set before every
    step from the global step, so it is right after a resume too."""

    def __init__(self, start: float, end: float, total_steps: int):
        self.start, self.end, self.total_steps = float(start), float(end), int(total_steps)

    def value(self, step: int) -> float:
        return warmup_cosine(step, self.start, self.end, self.total_steps, 0, self.start)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is None or self.start == self.end:
            return
        compat.set_weight_decay(optimizer, self.value(state.global_step))
