"""Reconstruction pictures of an MAE: original | masked | reconstructed, side by side in one PNG.

The image is resized (shorter side, bicubic) and centre-cropped to the model's input size. The masked panel
shows removed patches in grey; the reconstructed panel keeps the visible patches and fills the removed ones with
the decoder's prediction. A model trained with `norm_pix_loss` predicts standardised patches; they are mapped
back to pixels with each patch's own mean and variance, as in the MAE paper's figures of such models.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Optional

import numpy as np
import paddle
from PIL import Image

from paddlemix_eva.data.transforms import EvalTransform, ImageLike
from paddlemix_eva.models.mae.modeling import MAEForPretraining
from paddlemix_eva.models.mae.patches import NORM_PIX_EPS, patch_statistics, patchify, unpatchify
from paddlemix_eva.zoo import model_class_for

logger = logging.getLogger(__name__)

#: fill of removed patches in the masked panel
MASK_GREY = 0.5


def load_autoencoder(name_or_dir: str) -> MAEForPretraining:
    """An MAE pre-training model (with decoder) in eval mode; refuses classifiers and encoders, which have none."""
    model_type = model_class_for(name_or_dir).config_class.model_type
    if model_type != MAEForPretraining.config_class.model_type:
        raise ValueError(
            f"{name_or_dir} is a {model_type!r} model without an MAE decoder; reconstruction needs a pre-training "
            "model (the output of run_mae_pretrain_dist.py, or mae_visualize_vit_large.pth converted with "
            "`paddlemix-eva convert --format official`)"
        )
    return MAEForPretraining.from_pretrained(name_or_dir).eval()


def _to_pixels(images: paddle.Tensor, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalised [1, 3, H, W] -> HWC float in [0, 1]."""
    return np.clip(images.numpy()[0].transpose(1, 2, 0) * std + mean, 0.0, 1.0)


def reconstruct(model: MAEForPretraining, image: ImageLike, mask_ratio: Optional[float] = None,
                seed: int = 0) -> Dict[str, np.ndarray]:
    """{"original", "masked", "reconstruction"} as HxWx3 uint8 and "mask" [G, G] (1 = removed) for one image;
    the masking is drawn from `seed`."""
    config = model.config
    size, patch = config.image_size, config.patch_size
    x = paddle.to_tensor(EvalTransform(size, 1.0, config.mean, config.std)(image)[None])
    noise = paddle.to_tensor(np.random.default_rng(seed).random((1, config.num_patches), dtype=np.float32))
    with paddle.no_grad():
        out = model(x, noise=noise, mask_ratio=mask_ratio)
        pred = out["pred"]
        if config.norm_pix_loss:
            mean, var = patch_statistics(patchify(x, patch))
            pred = pred * paddle.sqrt(var + NORM_PIX_EPS) + mean
        removed = unpatchify(out["mask"].unsqueeze(-1).expand(pred.shape), patch, config.in_chans)
    mean, std = np.asarray(config.mean, np.float32), np.asarray(config.std, np.float32)
    original = _to_pixels(x, mean, std)
    predicted = _to_pixels(unpatchify(pred, patch, config.in_chans), mean, std)
    removed = removed.numpy()[0].transpose(1, 2, 0)
    panels = {
        "original": original,
        "masked": original * (1 - removed) + MASK_GREY * removed,
        "reconstruction": original * (1 - removed) + predicted * removed,
    }
    result = {name: np.round(panel * 255).astype(np.uint8) for name, panel in panels.items()}
    result["mask"] = out["mask"].numpy().reshape(config.grid_size, config.grid_size)
    return result


def save_reconstruction_figure(model_name_or_dir: str, image: ImageLike, out_path: str,
                               mask_ratio: Optional[float] = None, seed: int = 0) -> str:
    """Write original | masked | reconstructed (each image_size x image_size) to `out_path` (PNG)."""
    from paddlemix_eva.tasks.inference import read_image

    picture = read_image(image)  # names the file if it cannot be read, before the model loads
    model = load_autoencoder(model_name_or_dir)
    panels = reconstruct(model, picture, mask_ratio, seed)
    strip = np.concatenate([panels["original"], panels["masked"], panels["reconstruction"]], axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    Image.fromarray(strip).save(out_path, format="PNG")
    logger.info("%s: %d of %d patches removed; figure written to %s", model_name_or_dir, int(panels["mask"].sum()),
                panels["mask"].size, out_path)
    return out_path
