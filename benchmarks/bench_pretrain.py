"""Training throughput of EVA-02 MIM pre-training on this CPU, and where the time goes.

    python benchmarks/bench_pretrain.py [--steps 12] [--batch 8] [--workers 2] [--threads 2]

The Ti student (12 blocks, 224 px) learns from a tiny EVA-CLIP teacher (the g/14 structure shrunk to 2 blocks of
width 64) on generated images. Each step is timed in parts: waiting for data (DataLoader with `--workers`
processes), teacher forward, student forward + loss, backward, optimizer step. Then the same configuration runs
through `MIMTrainer` (the real training path) for its end-to-end samples/s.
"""
import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np

import paddlemix_eva  # noqa: F401  (before paddle)

# isort: split
import paddle
from PIL import Image, ImageDraw

from paddlemix_eva.data.mim import MIMPretrainDataset, collate_mim
from paddlemix_eva.layers.losses import negative_cosine_loss
from paddlemix_eva.models.eva02.pretrain import EVA02ForPretrain, EVA02ForPretrainConfig
from paddlemix_eva.models.eva02.zoo_table import eva02_config
from paddlemix_eva.utils.runtime import set_cpu_threads

TINY_TEACHER = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=224, patch_size=14, width=64, layers=2, head_width=32, mlp_ratio=4.3637,
                    qkv_bias=True, rope=False, naiveswiglu=False, subln=False),
    text_cfg=dict(width=32, heads=2, layers=1),
)


def make_images(root: str, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        img = Image.new("RGB", (320, 256), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.integers(0, 280, 2)
            draw.ellipse([x, y, x + 40, y + 40], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img.save(os.path.join(root, f"{i}.jpg"), quality=90)


def timed_steps(model, loader, steps: int):
    optimizer = paddle.optimizer.AdamW(
        learning_rate=1e-4, parameters=[p for p in model.parameters() if not p.stop_gradient], beta2=0.98
    )
    parts = {"data": [], "teacher": [], "student+loss": [], "backward": [], "optimizer": []}
    model.train()
    it = iter(loader)
    for step in range(steps + 2):  # 2 warm-up steps
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        mask = batch["bool_masked_pos"].reshape([batch["bool_masked_pos"].shape[0], -1]).astype("bool")
        with paddle.no_grad():
            target = model.teacher(batch["image"])[mask]
        t2 = time.perf_counter()
        loss = negative_cosine_loss(model.student(batch["samples"], mask), target)
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        optimizer.step()
        optimizer.clear_grad()
        t5 = time.perf_counter()
        if step >= 2:
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                parts[key].append(value)
    return {k: float(np.mean(v)) for k, v in parts.items()}


def trainer_throughput(config, data_dir: str, batch: int, workers: int, steps: int) -> float:
    from paddlemix_eva.trainer.mim import MIMPretrainArguments, MIMTrainer

    with tempfile.TemporaryDirectory() as out:
        args = MIMPretrainArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps,
                                    dataloader_num_workers=workers, report_to=[], disable_tqdm=True,
                                    save_strategy="no", logging_steps=steps)
        dataset = MIMPretrainDataset(data_dir, seed=0)
        trainer = MIMTrainer(model=EVA02ForPretrain(config), args=args, train_dataset=dataset,
                             data_collator=collate_mim)
        metrics = trainer.train().metrics
    return metrics["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    set_cpu_threads(args.threads)
    paddle.seed(0)
    config = EVA02ForPretrainConfig(teacher_config=TINY_TEACHER, student_config=eva02_config("Ti", 224))
    with tempfile.TemporaryDirectory() as data_dir:
        make_images(data_dir, args.batch * (args.steps + 3))
        dataset = MIMPretrainDataset(data_dir, seed=0)
        loader = paddle.io.DataLoader(dataset, batch_size=args.batch, shuffle=True, drop_last=True,
                                      num_workers=args.workers, collate_fn=collate_mim)
        parts = timed_steps(EVA02ForPretrain(config), loader, args.steps)
        end_to_end = trainer_throughput(config, data_dir, args.batch, args.workers, args.steps)
    total = sum(parts.values())
    print(f"EVA-02 Ti student + tiny teacher, 224 px, batch {args.batch}, {args.threads} threads, "
          f"{args.workers} data workers, {args.steps} timed steps")
    print(f"instrumented loop: {total:.3f} s/step = {args.batch / total:.2f} samples/s")
    for name, seconds in parts.items():
        print(f"  {name:13s} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")
    print(f"MIMTrainer end to end: {end_to_end:.2f} samples/s")
    data_share = parts["data"] / total
    print(f"data loading {'is NOT' if data_share < 0.1 else 'IS'} the bottleneck ({100 * data_share:.1f} % of a step)")


if __name__ == "__main__":
    sys.exit(main())
