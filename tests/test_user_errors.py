"""The toolkit as a new user meets it: bad input refused before the work starts, messages that point the right
way, default output without third-party noise, progress on long loops, small defects."""
import logging
import os
import stat
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from paddlemix_eva.cli import main as cli_main
from paddlemix_eva.models import (
    EVA02VisionTransformer,
    EVA02VisionTransformerForMIM,
    EVA02VisionTransformerForMIMConfig,
)
from paddlemix_eva.tasks import zoo_stats
from paddlemix_eva.utils.resources import sample_image_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: what Paddle, setuptools, datasets and PaddleNLP print on their own in a default run
NOISE = ("No ccache found", "Setuptools is replacing distutils", "PyTorch version", "You are using a model of type",
         "DEBUG", "newly initialized", "To copy construct from a tensor")


def _classifier_dir(config, path, num_classes=3) -> str:
    config.num_classes = num_classes
    EVA02VisionTransformer(config).save_pretrained(str(path))
    return str(path)


def _mim_dir(path) -> str:
    config = EVA02VisionTransformerForMIMConfig(image_size=56, patch_size=14, embed_dim=64, layers=1, num_heads=1,
                                                mlp_ratio=2.6667, qkv_bias=True, swiglu=True, predict_feature_dim=16)
    EVA02VisionTransformerForMIM(config).save_pretrained(str(path))
    return str(path)


def _folder(root, classes, per_class=2) -> str:
    rng = np.random.default_rng(0)
    for name in classes:
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(
                os.path.join(root, name, f"{i}.png"))
    return str(root)


def _cli(*args, check_clean=True):
    result = subprocess.run([sys.executable, "-m", "paddlemix_eva.cli", *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    if check_clean:
        assert "Traceback" not in result.stderr, result.stderr
    return result


def _no_noise(output: str) -> None:
    for noise in NOISE:
        assert noise not in output, (noise, output[-3000:])


# ---------------------------------------------------------------------------- refused at the start
def test_an_input_size_the_patches_do_not_tile_is_refused_with_the_nearest_sizes(tiny_eva02_config, tmp_path):
    model_dir = _classifier_dir(tiny_eva02_config, tmp_path / "model")
    with pytest.raises(ValueError, match=r"image_size 100 is not a multiple of patch_size 14.*98 or 112"):
        EVA02VisionTransformer.from_pretrained(model_dir, image_size=100)
    with pytest.raises(TypeError, match=r"has no field \['imgae_size'\]"):
        EVA02VisionTransformer.from_pretrained(model_dir, imgae_size=112)
    from paddlemix_eva.trainer.finetune import (
        FinetuneArguments,
        FinetuneDataArguments,
        FinetuneModelArguments,
        run_finetuning,
    )

    data = _folder(tmp_path / "data", ["cat", "dog", "fox"])
    with pytest.raises(ValueError, match="98 or 112"):
        run_finetuning(FinetuneModelArguments(model=model_dir, input_size=100), FinetuneDataArguments(data_path=data),
                       FinetuneArguments(output_dir=str(tmp_path / "out"), tensorboard=False))
    assert not (tmp_path / "out" / "model_state.pdparams").exists()


def test_one_class_is_refused_and_split_folders_are_flagged(tiny_eva02_config, tmp_path, caplog):
    from paddlemix_eva.trainer.finetune import check_training_classes

    with pytest.raises(ValueError, match=r"has 1 class folder \['cat'\]: a classifier needs at least two"):
        check_training_classes(["cat"], "data/")
    with caplog.at_level(logging.WARNING):
        check_training_classes(["train", "val"], "imagenet")
    assert ("look like dataset splits" in caplog.text
            and f"--data_path {os.path.join('imagenet', 'train')}" in caplog.text)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_training_classes(["cat", "dog", "test"], "pets")
    assert "dataset splits" not in caplog.text


def test_model_objects_without_a_classification_head_are_refused(tiny_eva02_config, tmp_path):
    from paddlemix_eva import inference_model
    from paddlemix_eva.models.mae import MAEConfig, MAEForPretraining
    from paddlemix_eva.models.mae.zoo_table import mae_config

    mim = EVA02VisionTransformerForMIM.from_pretrained(_mim_dir(tmp_path / "mim"))
    with pytest.raises(ValueError, match="EVA02VisionTransformerForMIM is not an image classifier"):
        inference_model(mim, sample_image_path())
    with pytest.raises(ValueError, match="MAEForPretraining is not an image classifier"):
        inference_model(MAEForPretraining(MAEConfig(**mae_config("test"))), sample_image_path())
    tiny_eva02_config.num_classes = 0
    with pytest.raises(ValueError, match="num_classes=0"):
        inference_model(EVA02VisionTransformer(tiny_eva02_config), sample_image_path())


def test_export_refuses_a_mim_student_directory(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", "--model", _mim_dir(tmp_path / "mim"), "--out", str(tmp_path / "export")])
    assert exit_info.value.code == 2 and not (tmp_path / "export").exists()


def test_convert_refuses_a_format_the_file_is_not(tmp_path):
    from paddlemix_eva.convert import convert_checkpoint
    from paddlemix_eva.utils.checkpoint import CheckpointError

    # timm's EVA-02 B layout: `fc1_g` / `fc1_x` / `mlp.norm` are timm's names only
    timm_state = {"blocks.0.mlp.fc1_g.weight": np.zeros((8, 4), np.float32),
                  "blocks.0.mlp.norm.weight": np.ones(8, np.float32)}
    for wrong in ("official", "open_clip"):
        with pytest.raises(CheckpointError, match=rf"is a 'timm' checkpoint \(its keys say so\), not '{wrong}'"):
            convert_checkpoint(timm_state, wrong, out=str(tmp_path / wrong))
    open_clip_state = {"visual.trunk.blocks.0.attn.qkv.weight": np.zeros((12, 4), np.float32)}
    with pytest.raises(CheckpointError, match="is a 'open_clip' checkpoint"):
        convert_checkpoint(open_clip_state, "timm", out=str(tmp_path / "t"))


def test_late_checks_now_come_first(tmp_path):
    """Arguments are checked before a model loads: a model name that does not exist is never reached."""
    result = _cli("mae-visualize", sample_image_path(), "--model", "no/such/model", "--out", str(tmp_path / "x.png"),
                  "--mask-ratio", "1.0")
    assert result.returncode == 2 and "--mask-ratio: mask_ratio must be in the open interval (0, 1)" in result.stderr
    data = _folder(tmp_path / "val", ["cat", "dog"])
    zero_shot = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "evaclip", "run_zero_shot_eval.py"),
                                "--model", "no/such/model", "--data_path", data], capture_output=True, text=True,
                               timeout=300)
    assert zero_shot.returncode == 2 and "2 class folders but there are 1000 class names" in zero_shot.stderr
    assert "pass --classnames FILE" in zero_shot.stderr


# ---------------------------------------------------------------------------------- messages
def test_messages_point_the_right_way(tiny_eva02_config, tmp_path, caplog):
    from paddlemix_eva import zoo
    from paddlemix_eva.tasks.export import export_model, load_exported
    from paddlemix_eva.tasks.inference import extract_features

    model_dir = _classifier_dir(tiny_eva02_config, tmp_path / "model")
    model = EVA02VisionTransformer.from_pretrained(model_dir)
    exported = export_model(model, str(tmp_path / "export"))
    with pytest.raises(FileNotFoundError, match="is an exported model.*--backend inference"):
        EVA02VisionTransformer.from_pretrained(exported)
    with pytest.raises(FileNotFoundError, match=r"is a model directory, not an exported model.*predict it without "
                                                r"--backend inference"):
        load_exported(model_dir)
    with pytest.raises(KeyError, match="`paddlemix-eva list`"):
        zoo.get_entry("eva02_Ti_pt_in21k_ft_in1k_p15")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(open(sample_image_path(), "rb").read()[:300])
    with caplog.at_level(logging.WARNING):
        _, errors = extract_features(model, [sample_image_path(), str(corrupt)])
    assert errors[0] is None and errors[1] is not None
    line = next(r.getMessage() for r in caplog.records if "skipping" in r.getMessage())
    assert line.count(str(corrupt)) == 1, line


def test_features_takes_image_files_too(tiny_eva02_config, tmp_path):
    model_dir = _classifier_dir(tiny_eva02_config, tmp_path / "model")
    out = tmp_path / "feats.npy"
    assert cli_main(["features", sample_image_path(), "--model", model_dir, "--out", str(out)]) == 0
    assert np.load(out).shape == (1, 128)
    assert (tmp_path / "feats.files.txt").read_text().strip() == sample_image_path()


def test_mae_visualize_names_an_unreadable_image(tmp_path):
    from paddlemix_eva.tasks.mae_visualize import save_reconstruction_figure

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(sample_image_path(), "rb").read()[:300])
    with pytest.raises(ValueError, match=str(truncated)):
        save_reconstruction_figure("no/such/model", str(truncated), str(tmp_path / "x.png"))


# ------------------------------------------------------------------------------- noise, progress
@pytest.mark.slow
def test_default_runs_print_no_third_party_noise(tiny_eva02_config, tmp_path):
    model_dir = _classifier_dir(tiny_eva02_config, tmp_path / "model")
    predict = _cli("predict", sample_image_path(), "--model", model_dir)
    assert predict.returncode == 0, predict.stderr
    _no_noise(predict.stderr)
    mim_dir = _mim_dir(tmp_path / "mim")
    data = _folder(tmp_path / "data", ["cat", "dog"])
    finetune = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "eva02", "run_eva02_finetune_dist.py"), "--model", mim_dir,
         "--data_path", data, "--output_dir", str(tmp_path / "ft"), "--max_steps", "2", "--warmup_steps", "1",
         "--per_device_train_batch_size", "2", "--dataloader_num_workers", "0", "--save_steps", "2",
         "--save_epochs", "0", "--tensorboard", "false", "--logging_steps", "1"],
        capture_output=True, text=True, timeout=300)
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    _no_noise(finetune.stderr)
    assert "step 2/2: loss" in finetune.stderr and "checkpoint-2 written to" in finetune.stderr
    export = _cli("export", "--model", model_dir, "--out", str(tmp_path / "export"))
    assert export.returncode == 0, export.stderr
    exported = _cli("predict", sample_image_path(), "--model", str(tmp_path / "export"), "--backend", "inference")
    assert exported.returncode == 0, exported.stderr
    for output in (export.stdout + export.stderr, exported.stdout + exported.stderr):
        _no_noise(output)
        for native in ("interface for pir graph mode", "ReduceMeanCheckIfOneDNNSupport", "not support input out"):
            assert native not in output, (native, output[-3000:])
    verbose = _cli("-v", "predict", sample_image_path(), "--model", model_dir)
    assert "Loading configuration file" in verbose.stderr  # PaddleNLP's own messages, back with --verbose


def test_progress_is_logged_when_stderr_is_not_a_terminal(monkeypatch, caplog):
    from paddlemix_eva.utils import logs

    monkeypatch.setattr(logs, "PROGRESS_LOG_INTERVAL", 0.0)
    with caplog.at_level(logging.INFO, logger="paddlemix_eva.utils.logs"):
        assert list(logs.progress(range(3), "encoding prompts", unit="batch")) == [0, 1, 2]
    assert "encoding prompts: 3/3 batch" in caplog.text


def test_zoo_counts_are_cached(tmp_path):
    import json

    from paddlemix_eva.utils import hub

    assert zoo_stats.count_parameters("eva02_Ti_pt_in21k_ft_in1k_p14") == 5_756_584
    with open(os.path.join(hub.cache_root(), zoo_stats.COUNTS_CACHE)) as f:
        cached = json.load(f)
    assert 5_756_584 in cached.values() and any(k.startswith("params:") for k in cached)


# -------------------------------------------------------------------------------- small defects
def test_written_weights_get_the_usual_permissions(tmp_path):
    from paddlemix_eva.utils.checkpoint import save_paddle_state_dict

    path = tmp_path / "w.pdparams"
    save_paddle_state_dict({"w": np.ones(2, np.float32)}, str(path))
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask


def test_launch_logs_are_ignored_by_git():
    with open(os.path.join(ROOT, ".gitignore")) as f:
        assert "/log/" in f.read().split()


def test_topk_with_k_above_the_class_count_is_said(caplog):
    from paddlemix_eva.tasks.evaluation import evaluate_classifier

    class TwoClasses(paddle.nn.Layer):
        def forward(self, x):
            return paddle.concat([x.mean(axis=[1, 2, 3], keepdim=False).unsqueeze(1)] * 2, axis=1)

    data = [(np.full((3, 4, 4), i, np.float32), np.int64(i % 2)) for i in range(4)]
    with caplog.at_level(logging.INFO):
        metrics = evaluate_classifier(TwoClasses(), data, batch_size=2)
    assert metrics["top5"] == 100.0 and "top-5 over 2 classes counts every sample" in caplog.text


def test_a_warmup_longer_than_the_run_is_said(tmp_path, caplog):
    from paddlemix_eva.trainer.base import EVATrainer, EVATrainingArguments

    args = EVATrainingArguments(output_dir=str(tmp_path), max_steps=4, warmup_steps=10, tensorboard=False)
    trainer = EVATrainer(model=paddle.nn.Linear(2, 2), args=args)
    with caplog.at_level(logging.WARNING):
        trainer.create_scheduler(4)
    assert "the warmup (10 steps) is as long as the whole run (4 steps)" in caplog.text
