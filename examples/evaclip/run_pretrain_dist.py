"""EVA-CLIP contrastive training with the PaddleNLP Trainer and PaddleMIX's flags (`paddlemix_eva.trainer.clip`).

    python -m paddle.distributed.launch --nproc_per_node 8 examples/evaclip/run_pretrain_dist.py \
        --model paddlemix/EVA/EVA02-CLIP-B-16 --train_data annotations/coco_karpathy_train.json \
        --image_root coco --output_dir output/evaclip --optimizer lamb --warmup_steps 2000 \
        --learning_rate 5e-4 --visual_lr 2e-4 --text_lr 2e-5 --weight_decay 0.05 --visual_wd 0.05 --text_wd 0.05 \
        --layer_decay 1.0 --visual_ld 0.75 --text_ld 0.75 --max_grad_norm 5.0 --num_train_epochs 200 \
        --sharding_parallel_degree 8 --sharding stage2 --local_loss true --gather_with_grad true \
        --classification_eval imagenet/val --per_device_train_batch_size 16 --per_device_eval_batch_size 8

`--train_data` is a Karpathy-format JSON (PaddleMIX's default COCO data), a JSONL/CSV manifest of (image,
caption), or webdataset tar shards (`shards/{00000..00127}.tar` or a .txt listing them; then give --max_steps).
Unreadable or caption-less samples are logged and skipped. The loss runs over the global batch across
data-parallel ranks. `--pretrained_visual_model` / `--pretrained_text_model` start the towers from other models;
`--patch_dropout 0.5` is FLIP's token dropout. Checkpoints in `--output_dir` reload with `EVACLIP.from_pretrained`.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.clip import (
    CLIPDataArguments,
    CLIPModelArguments,
    CLIPTrainingArguments,
    run_clip_pretraining,
)

if __name__ == "__main__":
    run_from_command_line(run_clip_pretraining, CLIPModelArguments, CLIPDataArguments, CLIPTrainingArguments)
