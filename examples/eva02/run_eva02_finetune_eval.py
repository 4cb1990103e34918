"""Evaluate an EVA-02 classifier on an ImageFolder: top-1 / top-5 over every sample, per-class accuracy report.

PaddleMIX's command runs as it is documented:

    python examples/eva02/run_eva02_finetune_eval.py --do_eval \
        --model paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14 --pretrained_model_path None \
        --eval_data_path ILSVRC2012/val --input_size 336 --per_device_eval_batch_size 128 \
        --dataloader_num_workers 10 --output_dir outputs --recompute True --fp16 False

Runs on CPU (--fp16/--bf16 need CUDA); under `python -m paddle.distributed.launch` every process scores its
share and each sample is counted exactly once. `--use_ema` evaluates the EMA weights a fine-tuning run saved in
`<model>/ema`; `--output_dir` receives eval_report.json with per-class accuracy.
"""
import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
from paddlemix_eva.trainer.base import run_from_command_line
from paddlemix_eva.trainer.finetune import EvalArguments, run_evaluation_command


def main(args: EvalArguments) -> None:
    import os

    import paddle.distributed as dist

    if int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1:
        dist.init_parallel_env()
    run_evaluation_command(args)


if __name__ == "__main__":
    run_from_command_line(main, EvalArguments)
