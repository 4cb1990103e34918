"""A tiny EVA-CLIP with fixed weights and a fixed global batch, shared by the 1- and 2-process runs."""
import numpy as np
import paddle

from paddlemix_eva.models import EVACLIP, EVACLIPConfig

CONFIG = dict(
    embed_dim=16,
    vision_cfg=dict(image_size=28, patch_size=14, width=64, layers=1, head_width=32, mlp_ratio=2.6667,
                    qkv_bias=True, rope=True, intp_freq=True, naiveswiglu=True, subln=True),
    text_cfg=dict(width=32, heads=2, layers=1),
)


#: (local_loss, gather_with_grad) as open_clip names them
LOSS_SETTINGS = [(False, True), (False, False), (True, True), (True, False)]


def tiny_clip() -> EVACLIP:
    paddle.seed(7)
    model = EVACLIP(EVACLIPConfig(**CONFIG))
    model.train()
    return model


def global_batch(size: int = 8):
    rng = np.random.default_rng(3)
    images = rng.standard_normal((size, 3, 28, 28)).astype(np.float32)
    ids = np.zeros((size, 77), np.int64)
    ids[:, 0] = 49406
    ids[:, 1:6] = rng.integers(1, 49000, (size, 5))
    ids[:, 6] = 49407
    return images, ids
