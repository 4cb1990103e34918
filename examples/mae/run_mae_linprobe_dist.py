"""MAE linear probing: a frozen pre-trained encoder, BatchNorm (no affine) + linear head trained with LARS.

    python -m paddle.distributed.launch --nproc_per_node 8 examples/mae/run_mae_linprobe_dist.py \
        --do_train --model paddlemix/MAE/mae_pretrain_vit_base --data_path ILSVRC2012/train \
        --eval_data_path ILSVRC2012/val --output_dir output/mae_vit_base_linprobe \
        --per_device_train_batch_size 512 --accum_freq 4 --blr 0.1 --weight_decay 0.0 \
        --num_train_epochs 90 --warmup_epochs 10 --evaluation_strategy epoch --dataloader_num_workers 10

The paper's batch is 16384 (lr 6.4); lr = blr x effective batch / 256 unless --learning_rate is given. Features
are the cls token after the encoder's final norm. Augmentation: random resized crop (0.08-1) and flip only.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.mae import (
    MAELinprobeArguments,
    MAELinprobeDataArguments,
    MAELinprobeModelArguments,
    run_mae_linear_probe,
)

if __name__ == "__main__":
    run_from_command_line(run_mae_linear_probe, MAELinprobeModelArguments, MAELinprobeDataArguments,
                          MAELinprobeArguments)
