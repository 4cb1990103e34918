"""Contrastive image-text training of EVA-CLIP with PaddleNLP's `Trainer`."""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np
import paddle
from paddlenlp.trainer import TrainerCallback

from paddlemix_eva.layers.losses import clip_contrastive_loss
from paddlemix_eva.trainer.base import EVATrainer, apply_save_epochs, prepare_run, seed_everything, train_and_save


def collate_image_text(samples: Sequence[tuple]) -> Dict[str, paddle.Tensor]:
    """(image [3, H, W], token ids [77]) pairs -> {"image": [B, 3, H, W], "input_ids": [B, 77]}."""
    images, ids = zip(*samples)
    return {"image": paddle.to_tensor(np.stack(images)), "input_ids": paddle.to_tensor(np.stack(ids))}


class ClampLogitScale(TrainerCallback):
    """Keep the learned temperature exp(logit_scale) at or below 100 after every optimizer step, as CLIP does."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        target = getattr(model, "_layers", model)  # unwrap DataParallel
        with paddle.no_grad():
            target.logit_scale.set_value(target.logit_scale.clip(0.0, math.log(100.0)))


class CLIPTrainer(EVATrainer):
    """Symmetric InfoNCE over the global batch: features are gathered across data-parallel ranks with their
    gradients, so N processes optimise exactly what one process does on the concatenated batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.tensor_parallel_degree > 1 or self.args.pipeline_parallel_degree > 1:
            raise ValueError("EVA-CLIP training supports data parallel and sharding; tensor/pipeline parallel is not "
                             "implemented for it")
        self.add_callback(ClampLogitScale())

    def compute_loss(self, model, inputs, return_outputs=False):
        out = model(image=inputs["image"], input_ids=inputs["input_ids"])
        loss = clip_contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])
        return (loss, out) if return_outputs else loss


def load_clip(name_or_dir: str, from_scratch: bool = False):
    """An EVACLIP by zoo name or directory: its weights, or (`from_scratch`) its config with upstream init."""
    import os

    from paddlemix_eva import zoo
    from paddlemix_eva.models import EVACLIP, EVACLIPConfig

    if not from_scratch:
        return EVACLIP.from_pretrained(name_or_dir)
    if os.path.isdir(name_or_dir):
        return EVACLIP(EVACLIPConfig.from_pretrained(name_or_dir))
    return zoo.get_model(name_or_dir)


def run_clip_pretraining(model_args, data_args, training_args):
    """Build model, manifest dataset and `CLIPTrainer` from parsed arguments; train, save, return the metrics."""
    from paddlemix_eva.data.datasets import ImageTextManifest
    from paddlemix_eva.data.transforms import RandomResizedCropTransform
    from paddlemix_eva.models.evaclip import get_tokenizer

    prepare_run(training_args)
    seed_everything(training_args.seed)
    model = load_clip(model_args.model, model_args.from_scratch)
    size = data_args.input_size or model.config.vision_config.image_size
    model.set_input_size(size)
    transform = RandomResizedCropTransform(size, scale=(data_args.crop_scale_min, 1.0))
    tokenizer = get_tokenizer()
    dataset = ImageTextManifest(
        data_args.train_data,
        transform,
        lambda text: tokenizer(text, context_length=model.config.text_config.context_length),
        image_key=data_args.image_key,
        caption_key=data_args.caption_key,
        seed=training_args.seed,
    )
    apply_save_epochs(training_args, len(dataset))
    trainer = CLIPTrainer(model=model, args=training_args, train_dataset=dataset, data_collator=collate_image_text)
    return train_and_save(trainer, "EVA-CLIP contrastive training", len(dataset))
