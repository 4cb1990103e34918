"""Evaluate an EVA-02 classifier on an ImageFolder: top-1 / top-5 over every sample, per-class accuracy report.

    python examples/eva02/run_eva02_finetune_eval.py --model paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14 \
        --eval_data_path ILSVRC2012/val --input_size 336 --per_device_eval_batch_size 64 --output_dir out/

Runs on CPU; under `python -m paddle.distributed.launch` every process scores its share and each sample is
counted exactly once. `--use_ema` evaluates the EMA weights a fine-tuning run saved in `<model>/ema`.
"""
import argparse
import json
import logging
import os

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)
import paddle.distributed as dist

from paddlemix_eva.errors import exit_on_bad_input
from paddlemix_eva.trainer.finetune import run_evaluation

logger = logging.getLogger("run_eva02_finetune_eval")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14",
                        help="zoo name or model directory")
    parser.add_argument("--eval_data_path", required=True, help="validation ImageFolder")
    parser.add_argument("--input_size", type=int, default=None, help="evaluation resolution (default: the model's)")
    parser.add_argument("--crop_pct", type=float, default=1.0, help="resize to size/crop_pct, then centre crop")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--dataloader_num_workers", type=int, default=2)
    parser.add_argument("--use_ema", action="store_true", help="evaluate <model>/ema")
    parser.add_argument("--output_dir", default=None, help="write eval_report.json (with per-class accuracy) here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1:
        dist.init_parallel_env()
    report = os.path.join(args.output_dir, "eval_report.json") if args.output_dir else None
    metrics = run_evaluation(args.model, args.eval_data_path, args.per_device_eval_batch_size,
                             args.dataloader_num_workers, args.input_size, args.crop_pct, args.use_ema, report)
    logger.info("top-1 %.2f%%  top-5 %.2f%%  over %d images (%d unreadable)", metrics["top1"], metrics["top5"],
                metrics["num_samples"], metrics["skipped"])
    print(json.dumps({k: metrics[k] for k in ("top1", "top5", "num_samples", "skipped")}))


if __name__ == "__main__":
    exit_on_bad_input(main)
