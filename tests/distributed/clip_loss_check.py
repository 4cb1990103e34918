"""Run under `paddle.distributed.launch`: for each (local_loss, gather_with_grad) setting, each rank encodes its
part of a fixed global batch with the same tiny EVA-CLIP, computes the contrastive loss, backpropagates, averages
the gradients over ranks as data parallel does, and rank 0 writes its loss and the gradients to OUT_DIR."""
import sys

import numpy as np

import paddlemix_eva  # noqa: F401

# isort: split
import paddle
import paddle.distributed as dist

from paddlemix_eva.layers.losses import clip_contrastive_loss
from paddlemix_eva.utils.runtime import leave_distributed_run

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from clip_fixture import LOSS_SETTINGS, global_batch, tiny_clip  # noqa: E402


def main(out_dir: str) -> None:
    dist.init_parallel_env()
    rank, world = dist.get_rank(), dist.get_world_size()
    images, ids = global_batch()
    per_rank = images.shape[0] // world
    part = slice(rank * per_rank, (rank + 1) * per_rank)
    for local_loss, gather_with_grad in LOSS_SETTINGS:
        model = tiny_clip()
        out = model(paddle.to_tensor(images[part]), paddle.to_tensor(ids[part]))
        loss = clip_contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"],
                                     local_loss=local_loss, gather_with_grad=gather_with_grad)
        loss.backward()
        grads = {}
        for name, param in model.named_parameters():
            grad = param.grad.clone()
            dist.all_reduce(grad)
            grads[name] = (grad / world).numpy()
        if rank == 0:
            np.savez(f"{out_dir}/dist_{int(local_loss)}{int(gather_with_grad)}.npz", loss=float(loss), **grads)


if __name__ == "__main__":
    main(sys.argv[1])
    leave_distributed_run()
