"""MAE fine-tuning on ImageNet-1K (recipe defaults of the official FINETUNE.md for ViT-B/16).

    python -m paddle.distributed.launch --nproc_per_node 8 examples/mae/run_mae_finetune_dist.py \
        --do_train --model paddlemix/MAE/mae_pretrain_vit_base --data_path ILSVRC2012/train \
        --eval_data_path ILSVRC2012/val --output_dir output/mae_vit_base_ft --per_device_train_batch_size 32 \
        --accum_freq 4 --blr 5e-4 --layer_decay 0.65 --weight_decay 0.05 --drop_path 0.1 \
        --num_train_epochs 100 --warmup_epochs 5 --mixup 0.8 --cutmix 1.0 --smoothing 0.1 --reprob 0.25 \
        --auto_augment rand-m9-mstd0.5-inc1 --evaluation_strategy epoch --dataloader_num_workers 10

For ViT-L/16 use --blr 1e-3 --layer_decay 0.75 --drop_path 0.2 --num_train_epochs 50; ViT-H/14 the same with
--drop_path 0.3. The model is the MAE encoder with global average pooling + fc_norm (--global_pool false: cls
token after norm); a pre-training checkpoint's decoder and mask token are dropped and reported, the head starts
from a trunc-normal with std 2e-5. Evaluation: resize to 256, centre crop 224 (--crop_pct 0.875), ImageNet
mean/std; use --crop_pct 1 above 224 px.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.mae import (
    MAEFinetuneArguments,
    MAEFinetuneDataArguments,
    MAEFinetuneModelArguments,
    run_mae_finetuning,
)

if __name__ == "__main__":
    run_from_command_line(run_mae_finetuning, MAEFinetuneModelArguments, MAEFinetuneDataArguments, MAEFinetuneArguments)
