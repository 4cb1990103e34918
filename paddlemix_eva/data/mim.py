"""Data for EVA-02 masked image modeling: two views of one crop plus a block-wise mask per image.

Each sample's augmentation (crop box, flip, mask) is a pure function of (seed, epoch, index), so the data a step
sees does not depend on the number of processes or workers, and a resumed run sees exactly what an uninterrupted
one would. Together with `datasets.GlobalBatchSampler`, 1 process with batch 2B and 2 processes with batch B
train on the same global batches.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from paddlemix_eva.data.datasets import SeededImageDataset
from paddlemix_eva.data.masking import MaskingGenerator
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD, Normalize, random_resized_crop_box

logger = logging.getLogger(__name__)


class MIMPretrainDataset(SeededImageDataset):
    """`dataset[i]` = (student view [3, S, S], teacher view [3, T, T], mask [S/p, S/p] bool).

    One random-resized-crop box (scale 0.2-1, ratio 3/4-4/3) and one flip are shared by both views; each view is
    resized (bicubic) to its own size and normalised with its own mean/std. Unreadable images are logged and
    replaced by the next readable one (batches keep their size across ranks).
    """

    def __init__(
        self,
        source: str,
        input_size: int = 224,
        second_input_size: Optional[int] = None,
        patch_size: int = 14,
        num_mask_patches: int = 105,
        min_mask_patches_per_block: int = 16,
        max_mask_patches_per_block: Optional[int] = None,
        crop_scale: Tuple[float, float] = (0.2, 1.0),
        crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        teacher_mean: Sequence[float] = CLIP_MEAN,
        teacher_std: Sequence[float] = CLIP_STD,
        seed: int = 0,
    ):
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of the student's patch size {patch_size}")
        super().__init__(source, seed)
        self.input_size = int(input_size)
        self.second_input_size = int(second_input_size or input_size)
        self.masker = MaskingGenerator(
            input_size // patch_size, num_mask_patches, min_mask_patches_per_block, max_mask_patches_per_block
        )
        self.crop_scale, self.crop_ratio, self.hflip = tuple(crop_scale), tuple(crop_ratio), float(hflip)
        self.student_norm = Normalize(mean, std)
        self.teacher_norm = Normalize(teacher_mean, teacher_std)

    def make_sample(self, img: Image.Image, rng: np.random.Generator):
        left, top, w, h = random_resized_crop_box(img.width, img.height, self.crop_scale, self.crop_ratio, rng)
        flip = rng.random() < self.hflip
        box = (left, top, left + w, top + h)
        views = []
        for size, norm in ((self.input_size, self.student_norm), (self.second_input_size, self.teacher_norm)):
            view = img.resize((size, size), Image.BICUBIC, box=box)
            if flip:
                view = view.transpose(Image.FLIP_LEFT_RIGHT)
            views.append(norm(view))
        return views[0], views[1], self.masker(rng)


def collate_mim(samples: Sequence[tuple]) -> Dict[str, np.ndarray]:
    """-> {"samples": student views, "image": teacher views, "bool_masked_pos": [B, H, W] bool} (PaddleMIX keys),
    numpy arrays the DataLoader turns into tensors in the main process (never Paddle ops in a forked worker)."""
    student, teacher, masks = zip(*samples)
    return {
        "samples": np.stack(student),
        "image": np.stack(teacher),
        "bool_masked_pos": np.stack(masks),
    }
