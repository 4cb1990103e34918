"""EVA-02 fine-tuning recipe: layer decay, EMA, exact evaluation on 1 and 2 processes, digits fine-tuning."""
import json
import logging
import math
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddlemix_eva.data.datasets import ImageFolder
from paddlemix_eva.data.transforms import EvalTransform
from paddlemix_eva.models import EVA02VisionTransformer, EVA02VisionTransformerConfig
from paddlemix_eva.tasks.evaluation import classification_metrics, evaluate_classifier, rank_share
from paddlemix_eva.trainer.ema import ModelEMA
from paddlemix_eva.trainer.finetune import (
    ClassificationCollator,
    FinetuneArguments,
    FinetuneTrainer,
    check_label_space,
    layer_decay_scales,
    load_classifier,
    soft_target_cross_entropy,
)

from digits_demo import write_digits_imagefolder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(image_size=28, patch_size=7, embed_dim=64, layers=3, num_heads=2, mlp_ratio=2.6667, qkv_bias=True,
             swiglu=True, subln=False, rope=True, intp_freq=True, pt_hw_seq_len=16)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    write_digits_imagefolder(str(root), size=28)
    return root


def small_model(num_classes=10, **overrides) -> EVA02VisionTransformer:
    paddle.seed(0)
    return EVA02VisionTransformer(EVA02VisionTransformerConfig(**{**SMALL, **overrides}, num_classes=num_classes))


# ----------------------------------------------------------------------------------- layer decay
def test_layer_decay_scales_and_no_decay_set(tmp_path):
    model = small_model()
    args = FinetuneArguments(output_dir=str(tmp_path), weight_decay=0.05, report_to=[])
    trainer = FinetuneTrainer(model=model, args=args, layer_decay=0.7)
    optimizer = trainer.create_optimizer(lr_scheduler=0.1)
    layers = model.config.layers
    layer_ids = model.layer_ids()
    expected_ids = {"cls_token": 0, "pos_embed": 0, "patch_embed.proj.weight": 0, "blocks.0.norm1.weight": 1,
                    "blocks.2.mlp.w3.bias": 3, "fc_norm.weight": layers + 1, "head.weight": layers + 1}
    for name, layer_id in expected_ids.items():
        assert layer_ids[name] == layer_id, name
    assert set(layer_ids) == {name for name, _ in model.named_parameters()}
    scales = layer_decay_scales(model, 0.7)
    for name, param in model.named_parameters():
        expected = 0.7 ** (layers + 1 - layer_ids[name])
        assert param.optimize_attr["learning_rate"] == pytest.approx(expected), name
        assert scales[name] == pytest.approx(expected)
    names = {p.name: n for n, p in model.named_parameters()}
    decayed = {names[p.name] for p in optimizer._parameter_list if optimizer._apply_decay_param_fun(p.name)}
    expected_decayed = {n for n, p in model.named_parameters() if p.ndim >= 2 and n not in ("pos_embed", "cls_token")}
    assert decayed == expected_decayed
    assert "patch_embed.proj.weight" in decayed and "head.weight" in decayed
    assert not any(n.endswith(".bias") or "norm" in n for n in decayed)


# ------------------------------------------------------------------------------------------ EMA
def test_ema_equals_the_closed_form_average():
    model = small_model()
    snapshots = [{k: v.numpy().copy() for k, v in model.state_dict().items()}]
    ema = ModelEMA(model, decay=0.9)
    rng = np.random.default_rng(0)
    for _ in range(4):
        with paddle.no_grad():
            for param in model.parameters():
                param.set_value(param + paddle.to_tensor(rng.standard_normal(param.shape).astype("float32")))
        ema.update(model)
        snapshots.append({k: v.numpy().copy() for k, v in model.state_dict().items()})
    k = len(snapshots) - 1
    for name, value in ema.module.state_dict().items():
        closed = 0.9 ** k * snapshots[0][name] + sum(
            (1 - 0.9) * 0.9 ** (k - i) * snapshots[i][name] for i in range(1, k + 1)
        )
        np.testing.assert_allclose(value.numpy(), closed, rtol=1e-5, atol=1e-6, err_msg=name)


# ------------------------------------------------------------------------------------- evaluation
def test_rank_shares_cover_every_sample_once():
    for n in (1, 13, 64, 65):
        for world in (1, 2, 3):
            shares = np.concatenate([rank_share(n, r, world) for r in range(world)])
            np.testing.assert_array_equal(np.sort(shares), np.arange(n))


def test_metrics_equal_a_numpy_computation():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((37, 7)), rng.integers(0, 7, 37)
    metrics = classification_metrics(logits, labels, [f"c{i}" for i in range(7)])
    ranks = (-logits).argsort(1)
    assert metrics["top1"] == pytest.approx(100 * np.mean(ranks[:, 0] == labels))
    assert metrics["top5"] == pytest.approx(100 * np.mean([labels[i] in ranks[i, :5] for i in range(37)]))
    for c in range(7):
        members = labels == c
        assert metrics["per_class"][f"c{c}"]["count"] == members.sum()
        assert metrics["per_class"][f"c{c}"]["top1"] == pytest.approx(100 * np.mean(ranks[members, 0] == c))


@pytest.mark.slow
def test_evaluation_counts_every_sample_once_on_one_and_two_processes(tmp_path):
    data = tmp_path / "val"
    rng = np.random.default_rng(0)
    from PIL import Image

    for c in range(3):
        (data / f"class{c}").mkdir(parents=True)
        for i in range(4 + c):  # 4 + 5 + 6 = 15 images: divisible neither by the batch (4) nor by 2 processes
            Image.fromarray(rng.integers(0, 255, (28, 28, 3)).astype(np.uint8)).save(data / f"class{c}" / f"{i}.png")
    small_model(num_classes=3).save_pretrained(str(tmp_path / "model"))
    script = os.path.join(ROOT, "tests", "distributed", "eval_check.py")
    args = [script, str(tmp_path / "model"), str(data), str(tmp_path)]
    single = subprocess.run([sys.executable] + args, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", str(tmp_path / "log")] + args, capture_output=True, text=True, timeout=600)
    assert double.returncode == 0, (tmp_path / "log" / "workerlog.0").read_text()[-2000:]
    one, two = np.load(tmp_path / "eval_1.npz"), np.load(tmp_path / "eval_2.npz")
    np.testing.assert_array_equal(one["indices"], np.arange(15))
    np.testing.assert_array_equal(two["indices"], np.arange(15))
    np.testing.assert_allclose(two["logits"], one["logits"], atol=1e-5)
    metrics = json.loads((tmp_path / "eval_2.json").read_text())
    assert metrics["num_samples"] == 15
    assert metrics["top1"] == pytest.approx(100 * np.mean(one["logits"].argmax(1) == one["labels"]))


def test_unreadable_validation_images_are_reported_and_skipped(digits, tmp_path, caplog):
    val = tmp_path / "val"
    for c in ("0", "1"):
        (val / c).mkdir(parents=True)
        for path in sorted((digits / "val" / c).glob("*.png"))[:3]:
            (val / c / path.name).write_bytes(path.read_bytes())
    (val / "1" / "broken.png").write_bytes(b"\x89PNG truncated")
    dataset = ImageFolder(str(val), EvalTransform(28))
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_classifier(small_model(num_classes=2), dataset, batch_size=4)
    assert metrics["num_samples"] == 6 and metrics["skipped"] == 1
    assert "broken.png" in " ".join(r.getMessage() for r in caplog.records)


def test_a_validation_set_of_other_classes_is_refused(digits):
    config = small_model().config
    config.class_names = [str(i) for i in range(10)]
    check_label_space(config, [str(i) for i in range(10)], "val")
    with pytest.raises(ValueError, match="has 3 class folders but the model's head has 10 outputs"):
        check_label_space(config, ["a", "b", "c"], "val")
    with pytest.raises(ValueError, match="differ from the classes the model was trained on"):
        check_label_space(config, [str(i) for i in range(9)] + ["ten"], "val")


# ------------------------------------------------------------------------------------- loading
def test_mim_weights_load_into_a_larger_classifier_with_a_warning(tmp_path, caplog):
    from paddlemix_eva.models import EVA02VisionTransformerForMIM, EVA02VisionTransformerForMIMConfig

    paddle.seed(0)
    mim = EVA02VisionTransformerForMIM(EVA02VisionTransformerForMIMConfig(**SMALL, predict_feature_dim=16))
    mim.save_pretrained(str(tmp_path / "mim"))
    with caplog.at_level(logging.INFO):
        model = load_classifier(str(tmp_path / "mim"), num_classes=5, input_size=42, drop_path=0.1)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "interpolating it bicubically" in text  # 4x4 -> 6x6 grid, never silently
    assert "mask_token" in text and "lm_head" in text  # reported as dropped
    assert "head" in text and "initialised afresh" in text
    assert model.pos_embed.shape == [1, 37, 64] and model.rope.grid_size == (6, 6)
    assert model.head.weight.shape == [64, 5] and model.config.drop_path_rate == 0.1
    np.testing.assert_array_equal(model.blocks[2].mlp.w3.weight.numpy(), mim.blocks[2].mlp.w3.weight.numpy())


# ------------------------------------------------------------------------------------ training
def test_collator_gives_soft_targets():
    collate = ClassificationCollator(num_classes=4, smoothing=0.2)
    batch = {k: paddle.to_tensor(v) for k, v in collate([(np.zeros((3, 8, 8), np.float32), 1),
                                                        (np.ones((3, 8, 8), np.float32), 3)]).items()}
    np.testing.assert_allclose(batch["labels"].numpy(), [[0.05, 0.85, 0.05, 0.05], [0.05, 0.05, 0.05, 0.85]])
    logits = paddle.to_tensor([[0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 0.0, 3.0]])
    log_p = paddle.nn.functional.log_softmax(logits, -1).numpy()
    expected = -(batch["labels"].numpy() * log_p).sum(-1).mean()
    assert float(soft_target_cross_entropy(logits, batch["labels"])) == pytest.approx(expected, rel=1e-6)


def test_short_finetune_on_digits_beats_chance_by_far(digits, tmp_path):
    from paddlemix_eva.trainer.finetune import FinetuneDataArguments, FinetuneModelArguments, run_finetuning

    small_model().save_pretrained(str(tmp_path / "init"))
    model_args = FinetuneModelArguments(model=str(tmp_path / "init"), layer_decay=0.8, model_ema=True,
                                        model_ema_decay=0.9)
    data_args = FinetuneDataArguments(data_path=str(digits / "train"), eval_data_path=str(digits / "val"),
                                      auto_augment="rand-m3-mstd0.5-inc1", hflip=0.0, scale_min=0.7,
                                      mixup=0.2, cutmix=0.0)
    args = FinetuneArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=32,
                             per_device_eval_batch_size=128, learning_rate=2e-3, num_train_epochs=10,
                             warmup_epochs=1, save_epochs=10, report_to=[], disable_tqdm=True,
                             dataloader_num_workers=0, logging_steps=20, seed=0)
    trainer, metrics = run_finetuning(model_args, data_args, args)
    assert metrics["eval_top1"] > 60.0, metrics  # chance: 10 %
    assert "eval_ema_top1" in metrics
    assert (tmp_path / "out" / "ema" / "model_state.pdparams").exists()
    reloaded = EVA02VisionTransformer.from_pretrained(str(tmp_path / "out"))
    assert reloaded.config.class_names == [str(i) for i in range(10)]
    from paddlemix_eva.trainer.finetune import run_evaluation

    report = tmp_path / "report.json"
    again = run_evaluation(str(tmp_path / "out"), str(digits / "val"), batch_size=100, report_path=str(report))
    assert again["top1"] == pytest.approx(metrics["eval_top1"])
    assert json.loads(report.read_text())["per_class"]["7"]["count"] == 36
    ema = run_evaluation(str(tmp_path / "out"), str(digits / "val"), batch_size=100, use_ema=True)
    assert ema["top1"] == pytest.approx(metrics["eval_ema_top1"])
    assert math.isfinite(trainer.state.log_history[0]["loss"])
