"""Data: image transforms and augmentation, datasets and samplers, the masking of MIM / MAE pre-training."""
