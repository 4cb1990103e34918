"""Model EMA: an exponential moving average of the weights, evaluated and saved next to the raw model."""
from __future__ import annotations

import copy
import logging
import os

import paddle
from paddlenlp.trainer import TrainerCallback

logger = logging.getLogger(__name__)
EMA_DIR = "ema"


class ModelEMA:
    """`ema = decay * ema + (1 - decay) * weights` after every optimizer step, starting from the initial weights
    (float tensors averaged, integer buffers copied). `module` is a full model: evaluate it, `save_pretrained` it."""

    def __init__(self, model: paddle.nn.Layer, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"model_ema_decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        self.module.eval()
        for param in self.module.parameters():
            param.stop_gradient = True

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name]
            if paddle.is_floating_point(average):
                average.set_value(average * self.decay + value.astype(average.dtype) * (1.0 - self.decay))
            else:
                average.set_value(value)

    def save(self, directory: str) -> None:
        self.module.save_pretrained(directory)

    def load(self, directory: str) -> None:
        self.module.load_weights(directory)
        logger.info("EMA weights restored from %s", directory)


class EMACallback(TrainerCallback):
    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(getattr(model, "_layers", model))


def ema_dir(checkpoint_dir: str) -> str:
    return os.path.join(checkpoint_dir, EMA_DIR)
