"""EVA-02 masked image modeling: masking, data pipeline, loss, teacher freezing, training, distribution, resume."""
import logging
import os
import signal
import subprocess
import time

import numpy as np
import paddle
import pytest
from PIL import Image, ImageDraw

from paddlemix_eva.data.datasets import GlobalBatchSampler, list_images
from paddlemix_eva.data.masking import MaskingGenerator
from paddlemix_eva.data.mim import MIMPretrainDataset, collate_mim
from paddlemix_eva.models.eva02.pretrain import EVA02ForPretrain, EVA02ForPretrainConfig
from paddlemix_eva.models.eva02.zoo_table import eva02_config
from paddlemix_eva.trainer.base import check_run_arguments, prepare_run
from paddlemix_eva.trainer.mim import MIMPretrainArguments, MIMTrainer

from launch import logged_losses, script_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "eva02", "run_eva02_pretrain_dist.py")
TINY_TEACHER = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=224, patch_size=14, width=64, layers=2, head_width=32, mlp_ratio=4.3637,
                    qkv_bias=True, rope=False, naiveswiglu=False, subln=False),
    text_cfg=dict(width=32, heads=2, layers=1),
)


def tiny_config(**student_overrides) -> EVA02ForPretrainConfig:
    """The EVA01-CLIP-g/14 teacher's structure shrunk to 2 blocks of width 64, and a 2-block Ti-shaped student."""
    return EVA02ForPretrainConfig(teacher_config=TINY_TEACHER,
                                  student_config=eva02_config("Ti", 224, layers=2, **student_overrides))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f"class{c}").mkdir()
        for i in range(16):
            img = Image.new("RGB", (72, 64), tuple(int(v) for v in rng.integers(0, 255, 3)))
            draw = ImageDraw.Draw(img)
            for _ in range(3):
                x, y = rng.integers(0, 50, 2)
                draw.ellipse([x, y, x + 18, y + 18], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
            img.save(root / f"class{c}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def composite_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("composite")
    tiny_config().save_pretrained(str(path))
    return path


# ------------------------------------------------------------------------------------------ masking
def test_masking_generator_statistics_bounds_and_seed():
    generator = MaskingGenerator(16, num_masking_patches=105, min_num_patches=16)
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(1000):
        mask = generator(rng)
        assert mask.shape == (16, 16) and mask.dtype == bool
        counts.append(int(mask.sum()))
    assert max(counts) <= 105  # never above the target
    assert 100 <= np.mean(counts) <= 105 and np.percentile(counts, 10) >= 95
    first = generator(np.random.default_rng(42))
    np.testing.assert_array_equal(first, generator(np.random.default_rng(42)))
    assert not np.array_equal(first, generator(np.random.default_rng(43)))
    small = MaskingGenerator((6, 8), num_masking_patches=20, min_num_patches=4)
    assert all(small(rng).sum() <= 20 for _ in range(200))
    with pytest.raises(ValueError, match="cannot mask 17 patches of a 4x4 grid"):
        MaskingGenerator(4, num_masking_patches=17)


def test_masks_are_made_of_rectangular_blocks_within_the_aspect_range():
    generator = MaskingGenerator(16, num_masking_patches=105, min_num_patches=16)
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = np.zeros((16, 16), bool)
        added = generator._place_block(mask, 105, rng)
        rows, cols = np.nonzero(mask)
        assert added == mask.sum() >= 1
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert mask[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1].all()  # one filled rectangle
        assert h < 16 and w < 16 and 0.3 / 1.5 <= h / w <= 1.5 / 0.3


# --------------------------------------------------------------------------------------------- data
def test_both_views_share_one_crop_and_flip(image_dir):
    same = MIMPretrainDataset(str(image_dir), input_size=112, num_mask_patches=26, second_input_size=112,
                              patch_size=14, seed=3)
    student, teacher, mask = same[5]
    np.testing.assert_array_equal(student, teacher)
    assert student.shape == (3, 112, 112) and mask.shape == (8, 8)
    # a teacher view at another size is the same crop resized: downsample the 224 view and compare coarsely
    bigger = MIMPretrainDataset(str(image_dir), input_size=112, num_mask_patches=26, second_input_size=224,
                                patch_size=14, seed=3)
    s2, t2, _ = bigger[5]
    np.testing.assert_array_equal(s2, student)
    pooled = t2.reshape(3, 112, 2, 112, 2).mean(axis=(2, 4))
    assert np.abs(pooled - student).mean() < 0.1
    other_norm = MIMPretrainDataset(str(image_dir), input_size=112, num_mask_patches=26, patch_size=14, seed=3,
                                    teacher_mean=(0.5, 0.5, 0.5), teacher_std=(0.5, 0.5, 0.5))
    s3, t3, _ = other_norm[5]
    np.testing.assert_array_equal(s3, student)
    assert not np.allclose(t3, teacher)


def test_augmentation_is_a_function_of_seed_epoch_and_index(image_dir):
    data = MIMPretrainDataset(str(image_dir), input_size=112, num_mask_patches=26, patch_size=14, seed=0)
    a = data[3]
    np.testing.assert_array_equal(data[3][0], a[0])
    np.testing.assert_array_equal(data[3][2], a[2])
    data.set_epoch(1)
    assert not np.array_equal(data[3][0], a[0]) or not np.array_equal(data[3][2], a[2])


def test_corrupt_images_are_logged_and_skipped(image_dir, tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    for i, path in enumerate(sorted(image_dir.glob("class0/*.png"))[:3]):
        (folder / f"{i}.png").write_bytes(path.read_bytes())
    (folder / "1.png").write_bytes((folder / "1.png").read_bytes()[:200])  # truncated
    (folder / "x.jpg").write_bytes(b"not an image at all")
    data = MIMPretrainDataset(str(folder), input_size=112, num_mask_patches=26, patch_size=14)
    with caplog.at_level(logging.WARNING):
        samples = [data[i] for i in range(len(data))]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "1.png" in messages and "x.jpg" in messages
    assert all(s[0].shape == (3, 112, 112) for s in samples)


def test_empty_data_is_refused(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image files"):
        list_images(str(tmp_path / "empty"))
    (tmp_path / "list.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        list_images(str(tmp_path / "list.txt"))
    with pytest.raises(FileNotFoundError):
        list_images(str(tmp_path / "nowhere"))


def test_global_batches_do_not_depend_on_the_process_count(image_dir):
    data = MIMPretrainDataset(str(image_dir), input_size=112, num_mask_patches=26, patch_size=14)
    one = list(GlobalBatchSampler(data, batch_size=8, num_replicas=1, rank=0, seed=5))
    two = [GlobalBatchSampler(data, batch_size=4, num_replicas=2, rank=r, seed=5) for r in range(2)]
    parts = [list(s) for s in two]
    assert [a + b for a, b in zip(*parts)] == one
    assert len(one) == 64 // 8 and sorted(sum(one, [])) == list(range(64))


# -------------------------------------------------------------------------------------- model / loss
def test_loss_is_negative_mean_cosine_over_masked_tokens(image_dir):
    paddle.seed(0)
    model = EVA02ForPretrain(tiny_config())
    batch = {k: paddle.to_tensor(v) for k, v in collate_mim([MIMPretrainDataset(str(image_dir))[i]
                                                             for i in range(2)]).items()}
    out = model(**batch)
    mask = batch["bool_masked_pos"].numpy().reshape(2, -1)
    with paddle.no_grad():
        teacher = model.teacher(batch["image"]).numpy()
        student = model.student(batch["samples"], batch["bool_masked_pos"], return_all_tokens=True).numpy()
    s, t = student[mask], teacher[mask]
    expected = -np.mean((s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1)))
    assert float(out["loss"]) == pytest.approx(expected, abs=1e-5)
    assert out["pred"].shape == [mask.sum(), 32] and out["loss"].dtype == paddle.float32


def test_teacher_is_frozen_and_stays_in_eval(image_dir, tmp_path):
    paddle.seed(0)
    model = EVA02ForPretrain(tiny_config())
    before = {k: v.numpy().copy() for k, v in model.teacher.state_dict().items()}
    student_before = model.student.blocks[0].attn.q_proj.weight.numpy().copy()
    args = MIMPretrainArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                                learning_rate=1e-3, warmup_steps=1, report_to=[], disable_tqdm=True,
                                dataloader_num_workers=0, save_strategy="no", recompute=True)
    data = MIMPretrainDataset(str(image_dir), seed=0)
    trainer = MIMTrainer(model=model, args=args, train_dataset=data, data_collator=collate_mim)
    assert model.student.enable_recompute  # --recompute reaches the student's blocks
    trainer.train()
    model.train()
    assert model.student.training and not model.teacher.training
    assert all(not layer.training for layer in model.teacher.sublayers())
    for name, param in model.teacher.named_parameters():
        assert param.stop_gradient and param.grad is None, name
        np.testing.assert_array_equal(param.numpy(), before[name], err_msg=name)
    assert not np.array_equal(model.student.blocks[0].attn.q_proj.weight.numpy(), student_before)
    assert all(not p.stop_gradient for p in trainer.optimizer._parameter_list)
    assert len(trainer.optimizer._parameter_list) == len(list(model.student.parameters()))


def test_grid_mismatch_and_parallel_layouts_are_refused_before_training():
    with pytest.raises(ValueError, match="patch grids differ"):
        EVA02ForPretrain(tiny_config(patch_size=16))
    args = MIMPretrainArguments(output_dir="unused", tensor_parallel_degree=2)
    if not paddle.is_compiled_with_cuda():
        with pytest.raises(ValueError, match="needs GPUs"):
            check_run_arguments(args)
        with pytest.raises(ValueError, match="mixed precision only runs on CUDA"):
            check_run_arguments(MIMPretrainArguments(output_dir="unused", bf16=True))
    with pytest.raises(ValueError, match="dp_degree 4 does not match"):
        check_run_arguments(MIMPretrainArguments(output_dir="unused", dp_degree=4))
    with pytest.raises(ValueError, match="--lr_scheduler_type linear: the EVA recipes schedule"):
        check_run_arguments(MIMPretrainArguments(output_dir="unused", lr_scheduler_type="linear"))
    check_run_arguments(MIMPretrainArguments(output_dir="unused", lr_scheduler_type="cosine"))  # PaddleMIX passes it
    accumulate = MIMPretrainArguments(output_dir="unused", accum_freq=3)
    flags = paddle.get_flags(["FLAGS_use_stride_kernel"])
    check_run_arguments(accumulate)  # checks only: neither the arguments nor the process change
    assert accumulate.gradient_accumulation_steps == 1 and paddle.get_flags(["FLAGS_use_stride_kernel"]) == flags
    prepare_run(accumulate)
    assert accumulate.gradient_accumulation_steps == 3


# ---------------------------------------------------------------------------------------- training
def _run_script(out_dir, composite_dir, image_dir, *extra, nproc=1, per_device=8, wait=True):
    args = ["--do_train", "--data_path", str(image_dir), "--model", str(composite_dir), "--output_dir", str(out_dir),
            "--per_device_train_batch_size", str(per_device), "--learning_rate", "1e-3", "--logging_steps", "1",
            "--seed", "0", "--dataloader_num_workers", "0", "--disable_tqdm", "true", *extra]
    proc = subprocess.Popen(script_command(SCRIPT, args, nproc, str(out_dir) + "_log"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(out_dir.parent))
    if not wait:
        return proc
    output, _ = proc.communicate(timeout=900)
    if nproc > 1 and os.path.isdir(str(out_dir) + "_log"):
        output += open(os.path.join(str(out_dir) + "_log", "workerlog.0")).read()
    assert proc.returncode == 0, output[-4000:]
    return output


def test_training_lowers_the_loss_and_saves_the_student(composite_dir, image_dir, tmp_path):
    out = tmp_path / "run"
    text = _run_script(out, composite_dir, image_dir, "--num_train_epochs", "3", "--save_epochs", "3")
    history = logged_losses(out / "checkpoint-24")
    losses = [history[s]["loss"] for s in sorted(history)]
    assert len(losses) == 24 and np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.3, losses
    assert all("grad_norm" in e and "learning_rate" in e for e in history.values())
    assert "MIM pre-training done" in text
    from paddlemix_eva.models import EVA02VisionTransformer

    classifier = EVA02VisionTransformer.from_pretrained(str(out), num_classes=4)  # fine-tunes from the student
    assert classifier.config.embed_dim == 192 and classifier.head.weight.shape == [192, 4]


@pytest.mark.slow
@pytest.mark.parametrize("layout", [["--dp_degree", "2"], ["--sharding", "stage1", "--sharding_parallel_degree", "2"]],
                         ids=["dp2", "sharding-stage1"])
def test_two_processes_follow_the_single_process_loss_curve(composite_dir, image_dir, tmp_path, layout):
    common = ["--max_steps", "4", "--save_steps", "4", "--save_epochs", "0"]
    single = tmp_path / "single"
    _run_script(single, composite_dir, image_dir, *common, per_device=8)
    double = tmp_path / "double"
    _run_script(double, composite_dir, image_dir, *common, *layout, nproc=2, per_device=4)
    one, two = logged_losses(single / "checkpoint-4"), logged_losses(double / "checkpoint-4")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], abs=1e-4), (step, one, two)
        assert two[step]["learning_rate"] == pytest.approx(one[step]["learning_rate"], rel=1e-6)


@pytest.mark.slow
def test_a_killed_run_resumes_as_if_never_interrupted(composite_dir, image_dir, tmp_path):
    common = ["--num_train_epochs", "2", "--save_epochs", "1"]  # 16 steps, checkpoints at 8 and 16
    full = tmp_path / "full"
    _run_script(full, composite_dir, image_dir, *common)
    reference = logged_losses(full / "checkpoint-16")

    killed = tmp_path / "killed"
    proc = _run_script(killed, composite_dir, image_dir, *common, wait=False)
    deadline = time.time() + 600
    while not (killed / "checkpoint-8" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoint-16").exists()
    _run_script(killed, composite_dir, image_dir, *common, "--resume_from_checkpoint", str(killed / "checkpoint-8"))
    resumed = logged_losses(killed / "checkpoint-16")
    assert sorted(resumed) == list(range(1, 17))
    for step in range(9, 17):
        assert resumed[step]["loss"] == pytest.approx(reference[step]["loss"], abs=1e-5), step
        assert resumed[step]["learning_rate"] == pytest.approx(reference[step]["learning_rate"], rel=1e-9), step
