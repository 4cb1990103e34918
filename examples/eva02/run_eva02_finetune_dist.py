"""EVA-02 image-classification fine-tuning (PaddleMIX recipe flags) with the PaddleNLP Trainer.

    python -m paddle.distributed.launch --nproc_per_node 8 examples/eva02/run_eva02_finetune_dist.py \
        --do_train --model paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_p14 --input_size 336 \
        --data_path ILSVRC2012/train --eval_data_path ILSVRC2012/val --output_dir output/eva02_Ti_ft \
        --learning_rate 2e-4 --layer_decay 0.9 --weight_decay 0.05 --num_train_epochs 100 --warmup_epochs 5 \
        --drop_path 0.1 --smoothing 0.1 --auto_augment rand-m9-mstd0.5-inc1 --reprob 0.0 --mixup 0 --cutmix 0 \
        --model_ema true --model_ema_decay 0.9999 --per_device_train_batch_size 128 --dataloader_num_workers 10

Starts from MIM weights (fresh `head` / `fc_norm`, pos_embed resampled to --input_size) or any EVA-02
classifier. Evaluates each --eval_steps / epoch (`--evaluation_strategy`) and at the end, raw and EMA weights;
the EMA model is saved in `<output_dir>/ema`.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.finetune import (
    FinetuneArguments,
    FinetuneDataArguments,
    FinetuneModelArguments,
    run_finetuning,
)

if __name__ == "__main__":
    run_from_command_line(run_finetuning, FinetuneModelArguments, FinetuneDataArguments, FinetuneArguments)
