"""Contrastive image-text training of EVA-CLIP with the PaddleNLP Trainer.

    python -m paddle.distributed.launch --nproc_per_node 2 examples/evaclip/run_pretrain_dist.py \
        --model paddlemix/EVA/EVA02-CLIP-B-16 --train_data pairs.jsonl --output_dir output/evaclip \
        --per_device_train_batch_size 32 --learning_rate 5e-4 --weight_decay 0.05 --warmup_steps 500 \
        --num_train_epochs 10 --dataloader_num_workers 2

`--train_data` is a JSONL (`{"image": path, "caption": text}` per line) or CSV manifest (header with `image` and
`caption`); unreadable images are logged and replaced by the next readable pair. The loss uses the global batch
across data-parallel ranks. Checkpoints in `--output_dir` reload with `EVACLIP.from_pretrained`.
"""
from dataclasses import dataclass, field
from typing import Optional

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlenlp.trainer import PdArgumentParser

from paddlemix_eva.trainer.base import EVATrainingArguments
from paddlemix_eva.trainer.clip import run_clip_pretraining
from paddlemix_eva.utils.errors import exit_on_bad_input


@dataclass
class ModelArguments:
    model: str = field(default="paddlemix/EVA/EVA02-CLIP-B-16", metadata={"help": "zoo name or model directory"})
    from_scratch: bool = field(
        default=False, metadata={"help": "build from the model's config with upstream init instead of its weights"}
    )


@dataclass
class DataArguments:
    train_data: str = field(default=None, metadata={"help": "JSONL or CSV manifest of (image path, caption)"})
    image_key: str = field(default="image", metadata={"help": "manifest field holding the image path"})
    caption_key: str = field(default="caption", metadata={"help": "manifest field holding the caption"})
    input_size: Optional[int] = field(default=None, metadata={"help": "training resolution (default: the model's)"})
    crop_scale_min: float = field(default=0.9, metadata={"help": "lower area bound of the random resized crop"})


def main():
    parser = PdArgumentParser((ModelArguments, DataArguments, EVATrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    if not data_args.train_data:
        parser.error("--train_data is required")
    run_clip_pretraining(model_args, data_args, training_args)


if __name__ == "__main__":
    exit_on_bad_input(main)
