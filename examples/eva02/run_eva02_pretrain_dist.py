"""EVA-02 masked image modeling pre-training (PaddleMIX recipe flags) with the PaddleNLP Trainer.

    python -m paddle.distributed.launch --nproc_per_node 8 examples/eva02/run_eva02_pretrain_dist.py \
        --do_train --data_path ILSVRC2012/train --model paddlemix/EVA/EVA02/eva02_Ti_for_pretrain \
        --output_dir output/eva02_Ti_pt --learning_rate 3e-3 --warmup_lr 1e-6 --min_lr 1e-5 --weight_decay 0.05 \
        --max_grad_norm 3.0 --num_train_epochs 240 --warmup_epochs 1 --save_epochs 1 \
        --per_device_train_batch_size 100 --dataloader_num_workers 10 --accum_freq 1 --recompute True \
        --input_size 224 --num_mask_patches 105 --seed 42

A frozen EVA-CLIP teacher (`--teacher`, default from the composite `--model`) gives per-patch targets; the
student (`--student`) learns to predict them at masked patches. Checkpoints hold the student only (unless
`--only_save_updated_model False`) and are fine-tuned with `run_eva02_finetune_dist.py`. Resume with
`--resume_from_checkpoint output/.../checkpoint-N` (schedule and data order continue).
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.mim import MIMDataArguments, MIMModelArguments, MIMPretrainArguments, run_mim_pretraining

if __name__ == "__main__":
    run_from_command_line(run_mim_pretraining, MIMModelArguments, MIMDataArguments, MIMPretrainArguments)
