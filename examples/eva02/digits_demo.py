"""The end-to-end demo behind `make demo`: MIM pre-training -> fine-tuning -> evaluation on a small real dataset.

scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes) are upscaled and written as an
ImageFolder with a stratified train/val split. A small EVA-02 student is pre-trained against a small randomly
initialised EVA-CLIP teacher (EVA01-CLIP-g/14's structure, shrunk), then fine-tuned and evaluated, each step by
running the same scripts as the full recipes with smaller flags.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Dict, List

import numpy as np
from PIL import Image

from paddlemix_eva.utils.logs import run_logged

logger = logging.getLogger(__name__)

IMAGE_SIZE = 56
PATCH_SIZE = 8
TEACHER = dict(
    embed_dim=64,
    vision_cfg=dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, width=64, layers=2, head_width=32,
                    mlp_ratio=4.3637, qkv_bias=True, rope=False, naiveswiglu=False, subln=False),
    text_cfg=dict(width=32, heads=2, layers=1),
)
STUDENT = dict(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, embed_dim=192, layers=6, num_heads=3, mlp_ratio=2.6667,
               qkv_bias=True, swiglu=True, naiveswiglu=False, subln=False, rope=True, pt_hw_seq_len=16,
               intp_freq=True)


def write_digits_imagefolder(root: str, size: int = IMAGE_SIZE, val_fraction: float = 0.2, seed: int = 0) -> Dict:
    """Write `root/train/<digit>/*.png` and `root/val/<digit>/*.png` (RGB, `size` px, bicubic upscaling of the
    8x8 originals); the split is stratified and seeded. Returns the image counts."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    for label in range(10):
        members = np.flatnonzero(digits.target == label)
        rng.shuffle(members)
        n_val = int(round(len(members) * val_fraction))
        for split, indices in (("val", members[:n_val]), ("train", members[n_val:])):
            folder = os.path.join(root, split, str(label))
            os.makedirs(folder, exist_ok=True)
            for index in indices:
                pixels = (digits.images[index] / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
                img = Image.fromarray(pixels).resize((size, size), Image.BICUBIC).convert("RGB")
                img.save(os.path.join(folder, f"{index:04d}.png"))
                counts[split] += 1
    return counts


def write_pretrain_config(path: str) -> str:
    from paddlemix_eva.models.eva02.pretrain import EVA02ForPretrainConfig

    EVA02ForPretrainConfig(teacher_config=TEACHER, student_config=STUDENT).save_pretrained(path)
    return path


def run_demo(workdir: str, examples_dir: str, pretrain_epochs: int = 3, finetune_epochs: int = 10) -> Dict:
    """Data, pre-training, fine-tuning, evaluation under `workdir`; returns the evaluation metrics and paths."""
    os.makedirs(workdir, exist_ok=True)
    start = time.time()
    data = os.path.join(workdir, "digits")
    if not os.path.isdir(os.path.join(data, "val")):
        counts = write_digits_imagefolder(data)
        logger.info("wrote %d train / %d val digit images to %s", counts["train"], counts["val"], data)
    composite = write_pretrain_config(os.path.join(workdir, "pretrain_config"))
    python = sys.executable
    pretrain_out, finetune_out = os.path.join(workdir, "pretrain"), os.path.join(workdir, "finetune")
    common = ["--seed", "0", "--dataloader_num_workers", "2", "--disable_tqdm", "true", "--logging_steps", "20",
              "--overwrite_output_dir", "true"]
    run_logged([python, os.path.join(examples_dir, "run_eva02_pretrain_dist.py"), "--do_train",
          "--data_path", os.path.join(data, "train"), "--model", composite, "--output_dir", pretrain_out,
          "--input_size", str(IMAGE_SIZE), "--num_mask_patches", "20", "--min_mask_patches_per_block", "4",
          "--per_device_train_batch_size", "32", "--learning_rate", "1.5e-3", "--warmup_epochs", "1",
          "--num_train_epochs", str(pretrain_epochs), "--save_epochs", str(pretrain_epochs), *common],
         os.path.join(workdir, "pretrain.log"))
    run_logged([python, os.path.join(examples_dir, "run_eva02_finetune_dist.py"), "--do_train",
          "--model", pretrain_out, "--data_path", os.path.join(data, "train"),
          "--eval_data_path", os.path.join(data, "val"), "--output_dir", finetune_out,
          "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64", "--learning_rate", "2e-3",
          "--layer_decay", "0.75", "--warmup_epochs", "2", "--num_train_epochs", str(finetune_epochs),
          "--save_epochs", str(finetune_epochs), "--drop_path", "0.1", "--smoothing", "0.1",
          "--auto_augment", "rand-m5-mstd0.5-inc1", "--hflip", "0", "--scale_min", "0.6", "--reprob", "0.1",
          "--model_ema", "true", "--model_ema_decay", "0.99", *common],
         os.path.join(workdir, "finetune.log"))
    run_logged([python, os.path.join(examples_dir, "run_eva02_finetune_eval.py"), "--model", finetune_out,
          "--eval_data_path", os.path.join(data, "val"), "--output_dir", finetune_out,
          "--dataloader_num_workers", "0"],
         os.path.join(workdir, "eval.log"))
    with open(os.path.join(finetune_out, "eval_report.json")) as f:
        report = json.load(f)
    return {"top1": report["top1"], "top5": report["top5"], "num_samples": report["num_samples"],
            "seconds": time.time() - start, "data": data, "pretrain": pretrain_out, "finetune": finetune_out,
            "report": os.path.join(finetune_out, "eval_report.json"), "logs": workdir,
            "visualdl": [os.path.join(pretrain_out, "runs"), os.path.join(finetune_out, "runs")]}


def summary_lines(result: Dict) -> List[str]:
    return [
        f"val top-1 {result['top1']:.2f}% (top-5 {result['top5']:.2f}%) on {result['num_samples']} held-out digits, "
        f"{result['seconds'] / 60:.1f} min end to end",
        f"data:              {result['data']}",
        f"MIM student:       {result['pretrain']}",
        f"fine-tuned model:  {result['finetune']} (EMA weights in {os.path.join(result['finetune'], 'ema')})",
        f"evaluation report: {result['report']}",
        f"logs:              {result['logs']}/*.log",
        f"VisualDL curves:   visualdl --logdir {' '.join(result['visualdl'])}",
    ]
