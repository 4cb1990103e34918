"""MAE pre-training data: an augmented view and the masking noise of each image.

Crop, flip and noise are drawn from a generator seeded by (seed, epoch, index), so a sample is the same however
many processes or workers load it; with `datasets.GlobalBatchSampler`, one process with batch 2B and two with
batch B mask and train on identical global batches. Unreadable images are logged and replaced by the next one.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from paddlemix_eva.data.augment import build_train_transform
from paddlemix_eva.data.datasets import SeededImageDataset
from paddlemix_eva.data.transforms import IMAGENET_MEAN, IMAGENET_STD


class MAEPretrainDataset(SeededImageDataset):
    """`dataset[i]` = (image [3, S, S] float32, noise [num_patches] float32 in [0, 1)).

    The upstream pre-training view: RandomResizedCrop(S, scale=(0.2, 1)) bicubic, horizontal flip, ImageNet
    normalisation; no colour jitter, no RandAugment. `source` is an image directory or a file list.
    """

    def __init__(
        self,
        source: str,
        input_size: int,
        num_patches: int,
        crop_scale: Tuple[float, float] = (0.2, 1.0),
        hflip: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int = 0,
    ):
        super().__init__(source, seed)
        self.num_patches = int(num_patches)
        self.transform = build_train_transform(input_size, scale=tuple(crop_scale), hflip=hflip, auto_augment=None,
                                               color_jitter=None, mean=mean, std=std, interpolation="bicubic")

    def make_sample(self, img, rng: np.random.Generator):
        image = self.transform(img, rng)
        return image, rng.random(self.num_patches, dtype=np.float32)


def collate_mae(samples: Sequence[tuple]) -> Dict[str, np.ndarray]:
    """-> {"image": [B, 3, S, S], "noise": [B, num_patches]}, the keyword arguments of `MAEForPretraining` (numpy:
    the DataLoader makes the tensors in the main process, never Paddle ops in a forked worker)."""
    images, noise = zip(*samples)
    return {"image": np.stack(images), "noise": np.stack(noise)}
