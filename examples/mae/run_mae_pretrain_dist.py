"""MAE pre-training (recipe defaults of the official PRETRAIN.md) with the PaddleNLP Trainer.

    python -m paddle.distributed.launch --nproc_per_node 8 examples/mae/run_mae_pretrain_dist.py \
        --do_train --data_path ILSVRC2012/train --model paddlemix/MAE/mae_vit_base_patch16 \
        --output_dir output/mae_vit_base --per_device_train_batch_size 64 --accum_freq 8 \
        --blr 1.5e-4 --weight_decay 0.05 --num_train_epochs 800 --warmup_epochs 40 --save_epochs 20 \
        --mask_ratio 0.75 --norm_pix_loss true --dataloader_num_workers 10

The learning rate is blr x effective batch / 256 (here 64 x 8 x 8 = 4096, lr 2.4e-3) unless --learning_rate is
given; AdamW betas (0.9, 0.95), per-step warmup then cosine to 0, no gradient clipping. Data parallel is the
default under the launcher; `--sharding stage1` shards the optimizer state. Fine-tune the result with
run_mae_finetune_dist.py --model output/mae_vit_base (the decoder is dropped). Resume with
--resume_from_checkpoint output/mae_vit_base/checkpoint-N.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.mae import (
    MAEPretrainArguments,
    MAEPretrainDataArguments,
    MAEPretrainModelArguments,
    run_mae_pretraining,
)

if __name__ == "__main__":
    run_from_command_line(run_mae_pretraining, MAEPretrainModelArguments, MAEPretrainDataArguments,
                          MAEPretrainArguments)
