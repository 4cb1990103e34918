"""Run under `paddle.distributed.launch` (or alone): evaluate a saved classifier on an ImageFolder with
`predict`, and write the gathered indices / logits and the metrics (rank 0) to OUT_DIR/eval_<world>.npz."""
import json
import sys

import numpy as np

import paddlemix_eva  # noqa: F401

# isort: split
import paddle.distributed as dist

from paddlemix_eva.data.datasets import ImageFolder
from paddlemix_eva.data.transforms import EvalTransform
from paddlemix_eva.models import EVA02VisionTransformer
from paddlemix_eva.tasks.evaluation import classification_metrics, predict
from paddlemix_eva.utils.runtime import leave_distributed_run


def main(model_dir: str, data_dir: str, out_dir: str) -> None:
    world = int(__import__("os").environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world > 1:
        dist.init_parallel_env()
    model = EVA02VisionTransformer.from_pretrained(model_dir)
    dataset = ImageFolder(data_dir, EvalTransform(model.config.image_size))
    out = predict(model, dataset, batch_size=4)
    if world == 1 or dist.get_rank() == 0:
        metrics = classification_metrics(out["logits"], out["labels"])
        np.savez(f"{out_dir}/eval_{world}.npz", **out)
        with open(f"{out_dir}/eval_{world}.json", "w") as f:
            json.dump({k: metrics[k] for k in ("top1", "top5", "num_samples")}, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
    leave_distributed_run()
