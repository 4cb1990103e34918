"""Resumed fine-tuning is exact: through the script, with DataLoader workers and every augmentation on (random
crop, flip, RandAugment, random erasing, mixup / cutmix, drop path), a run resumed from a checkpoint logs the
losses of the uninterrupted run; the reported train_loss is this run's mean; a checkpoint past the end is refused."""
import json
import os
import shutil
import subprocess

import numpy as np
import paddle
import pytest
from PIL import Image

from paddlemix_eva.data.augment import build_train_transform
from paddlemix_eva.data.datasets import SeededImageFolder, batch_rng
from paddlemix_eva.models import EVA02VisionTransformer, EVA02VisionTransformerConfig, EvoDeiT, EvoDeiTConfig
from paddlemix_eva.trainer.finetune import ClassificationCollator, FinetuneDataArguments, build_mixup

from launch import logged_losses, script_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE = os.path.join(ROOT, "examples", "eva02", "run_eva02_finetune_dist.py")
EVO = os.path.join(ROOT, "examples", "evovit", "run_evovit_train_dist.py")
TINY = dict(image_size=28, patch_size=7, embed_dim=32, layers=2, num_heads=2, mlp_ratio=2.0, qkv_bias=True,
            swiglu=True, subln=False, rope=True, intp_freq=True, pt_hw_seq_len=16)
#: 24 images, batch 4: 6 steps per epoch, 12 in all; checkpoints at 3, 6 (an epoch's end), 9 (mid-epoch), 12
AUGMENTED = ["--per_device_train_batch_size", "4", "--num_train_epochs", "2", "--save_epochs", "0",
             "--save_steps", "3", "--logging_steps", "1", "--dataloader_num_workers", "2", "--seed", "3",
             "--learning_rate", "1e-3", "--warmup_epochs", "1", "--layer_decay", "0.9", "--drop_path", "0.1",
             "--scale_min", "0.08", "--hflip", "0.5", "--auto_augment", "rand-m9-mstd0.5-inc1", "--reprob", "0.5",
             "--mixup", "0.8", "--cutmix", "1.0", "--mixup_switch_prob", "0.5", "--smoothing", "0.1",
             "--disable_tqdm", "true", "--tensorboard", "false"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 8 random 36x30 images (not square, not the model's size: the crop has something to do)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir()
        for i in range(8):
            pixels = rng.integers(0, 255, (30, 36, 3)).astype(np.uint8)
            pixels[..., c] = np.clip(pixels[..., c].astype(int) + 80, 0, 255)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    paddle.seed(0)
    path = tmp_path_factory.mktemp("model")
    EVA02VisionTransformer(EVA02VisionTransformerConfig(**TINY, num_classes=3)).save_pretrained(str(path))
    return path


def _run(script, out_dir, *args):
    result = subprocess.run(script_command(script, ["--output_dir", str(out_dir), *args]), capture_output=True,
                            text=True, timeout=600, cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


def _resume_copy(full, checkpoint, out_dir):
    """A fresh output dir holding only `checkpoint` of the full run: where a run killed after it would resume."""
    out_dir.mkdir()
    shutil.copytree(full / checkpoint, out_dir / checkpoint)
    return out_dir


def _losses(out_dir, first):
    history = logged_losses(out_dir)  # the trainer_state.json saved beside the final model
    return {step: history[step]["loss"] for step in sorted(history) if step >= first}


def _check_run_summary(out_dir, output, first):
    """train_loss (metrics file and summary line) is the mean over this run's steps, which `first` starts."""
    results = json.loads((out_dir / "all_results.json").read_text())
    own = list(_losses(out_dir, first).values())
    assert len(own) == 13 - first
    assert results["train_loss"] == pytest.approx(np.mean(own), rel=1e-6)
    assert (results["train_first_step"], results["train_last_step"]) == (first, 12)
    assert f"train_loss {np.mean(own):.4f} (mean over steps {first}-12, this run's)" in output


# ---------------------------------------------------------------------------------------------- data
def test_augmentation_is_a_function_of_seed_epoch_and_index(folder):
    """Samples and mixed batches are fixed by (seed, epoch, index): loaded in another order they are the same
    (no global RNG state in between); another epoch or seed draws anew."""
    transform = build_train_transform(28, reprob=0.5)
    dataset = SeededImageFolder(str(folder), transform, seed=3)
    dataset.set_epoch(1)
    forward = [dataset[i] for i in (4, 9)]
    backward = [dataset[i] for i in (9, 4)][::-1]
    for (a, label_a, key_a), (b, label_b, key_b) in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
        assert label_a == label_b and list(key_a) == list(key_b)
    assert list(forward[0][2]) == [3, 1, 4]
    dataset.set_epoch(2)
    assert not np.array_equal(dataset[4][0], forward[0][0])
    assert not np.array_equal(SeededImageFolder(str(folder), transform, seed=4)[4][0], dataset[4][0])

    collate = ClassificationCollator(3, 0.1, build_mixup(FinetuneDataArguments(mixup=0.8, cutmix=1.0), 3))
    batch = [dataset[i] for i in (4, 9, 13, 20)]
    first, again = collate(batch), collate(batch)
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["labels"], again["labels"])
    assert not np.array_equal(batch_rng(batch[0][2]).random(4), dataset.sample_rng(4).random(4))


# ------------------------------------------------------------------------------------------- resuming
@pytest.mark.slow
def test_finetuning_resumes_exactly_with_workers_and_every_augmentation(folder, tiny_model, tmp_path):
    common = ["--model", str(tiny_model), "--data_path", str(folder), *AUGMENTED]
    full = tmp_path / "full"
    code, output = _run(FINETUNE, full, *common)
    assert code == 0, output[-4000:]
    reference = _losses(full, 1)
    assert sorted(reference) == list(range(1, 13))
    _check_run_summary(full, output, 1)

    # checkpoint-9 lies inside epoch 2: PaddleNLP skips 3 batches, the RNG states and the augmentation follow
    mid = _resume_copy(full, "checkpoint-9", tmp_path / "mid")
    code, output = _run(FINETUNE, mid, *common, "--resume_from_checkpoint", "last")
    assert code == 0, output[-4000:]
    assert _losses(mid, 10) == {step: reference[step] for step in (10, 11, 12)}
    _check_run_summary(mid, output, 10)

    # checkpoint-6 ends epoch 1, where PaddleNLP itself restores no RNG state; no workers this time: the data do
    # not depend on them
    boundary = _resume_copy(full, "checkpoint-6", tmp_path / "boundary")
    code, output = _run(FINETUNE, boundary, *common, "--resume_from_checkpoint", "last",
                        "--dataloader_num_workers", "0")
    assert code == 0, output[-4000:]
    assert _losses(boundary, 7) == {step: reference[step] for step in range(7, 13)}
    _check_run_summary(boundary, output, 7)


@pytest.mark.slow
def test_evo_vit_training_resumes_exactly(folder, tmp_path):
    """Evo-DeiT (EMA on, stage-wise selection from epoch 1) resumed inside its second epoch."""
    paddle.seed(0)
    init = tmp_path / "init"
    EvoDeiT(EvoDeiTConfig(image_size=32, patch_size=8, embed_dim=32, layers=12, num_heads=2,
                          num_classes=3)).save_pretrained(str(init))
    common = ["--model", str(init), "--data_path", str(folder), "--switch_epoch", "1", *AUGMENTED,
              "--save_steps", "9"]
    full = tmp_path / "full"
    code, output = _run(EVO, full, *common)
    assert code == 0, output[-4000:]
    reference = _losses(full, 10)
    resumed = _resume_copy(full, "checkpoint-9", tmp_path / "resumed")
    code, output = _run(EVO, resumed, *common, "--resume_from_checkpoint", "last")
    assert code == 0, output[-4000:]
    assert "epoch 1: stage-wise selection" in output
    assert _losses(resumed, 10) == reference and sorted(reference) == [10, 11, 12]
    _check_run_summary(resumed, output, 10)


def test_a_checkpoint_past_the_end_of_the_run_is_refused(folder, tiny_model, tmp_path):
    """A checkpoint of step 7 resumed into a 6-step run (1 epoch): exit 2 before any step, both numbers named."""
    common = ["--model", str(tiny_model), "--data_path", str(folder), "--per_device_train_batch_size", "4",
              "--save_epochs", "0", "--save_steps", "7", "--disable_tqdm", "true", "--tensorboard", "false",
              "--warmup_epochs", "0", "--auto_augment", "none"]
    out = tmp_path / "run"
    code, output = _run(FINETUNE, out, *common, "--max_steps", "7")
    assert code == 0, output[-4000:]
    code, output = _run(FINETUNE, out, *common, "--num_train_epochs", "1", "--resume_from_checkpoint", "last")
    assert code == 2, output[-4000:]
    assert "checkpoint is at step 7 but this run ends at 6 steps (--num_train_epochs 1)" in output
    assert "raise --num_train_epochs or --max_steps beyond 7" in output and "Traceback" not in output
    assert "step 8/" not in output and "fine-tuning done" not in output
