"""Evo-ViT training with the PaddleNLP Trainer (data parallel under `paddle.distributed.launch`).

Evo-DeiT-S, the DeiT recipe (no distillation; 8 processes x 128 = batch 1024, lr = 5e-4 x 1024 / 512):

    python -m paddle.distributed.launch --nproc_per_node 8 examples/evovit/run_evovit_train_dist.py \
        --model paddlemix/EvoViT/evo_deit_small_patch16_224 --data_path ILSVRC2012/train \
        --eval_data_path ILSVRC2012/val --output_dir output/evo_deit_s --per_device_train_batch_size 128 \
        --blr 5e-4 --weight_decay 0.05 --num_train_epochs 300 --warmup_epochs 5 --drop_path 0.1 \
        --dataloader_num_workers 10

Evo-LeViT-256, the LeViT recipe (hard distillation from RegNetY-160, AGC 0.01, weight decay 0.025):

    paddlemix-eva convert regnety_160-a5fe301d.pth --format timm --out teachers/regnety_160
    python -m paddle.distributed.launch --nproc_per_node 8 examples/evovit/run_evovit_train_dist.py \
        --model paddlemix/EvoViT/evo_levit_256 --teacher teachers/regnety_160 --distillation_type hard \
        --data_path ILSVRC2012/train --eval_data_path ILSVRC2012/val --output_dir output/evo_levit_256 \
        --per_device_train_batch_size 256 --blr 5e-4 --weight_decay 0.025 --agc_clip 0.01 --num_train_epochs 300

A zoo name builds the architecture from scratch (the recipes train from scratch); a directory starts from its
weights. Selection is layer-wise until `--switch_epoch` (default 2/3 of the run's epochs), stage-wise after.
Augmentation defaults are the DeiT recipe's (RandAugment m9-mstd0.5-inc1, mixup 0.8, cutmix 1.0, smoothing 0.1,
random erasing 0.25, ImageNet mean/std, eval crop 0.875); the EMA (0.99996) is saved in `<output_dir>/ema`.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.evovit import EvoDataArguments, EvoModelArguments, EvoTrainingArguments, run_evo_training

if __name__ == "__main__":
    run_from_command_line(run_evo_training, EvoModelArguments, EvoDataArguments, EvoTrainingArguments)
