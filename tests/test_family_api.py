"""The family-agnostic API: every family's saved models load, fine-tune, evaluate and predict through the same
entry points, configs declare preprocessing and labels, EVA-CLIP does zero-shot prediction from the CLI, layer
ids come from the model, and a resized EVA-CLIP tower saves its true size."""
import json

import numpy as np
import paddle
import pytest

from paddlemix_eva import cli, zoo
from paddlemix_eva.data.transforms import IMAGENET_MEAN, Preprocessing
from paddlemix_eva.models import EVACLIP, EVACLIPConfig
from paddlemix_eva.models.evovit import EvoDeiT
from paddlemix_eva.models.mae import MAEForPretraining, MAEVisionTransformer
from paddlemix_eva.tasks.inference import eval_transform, inference_model, load_classifier_for_inference
from paddlemix_eva.trainer.finetune import layer_decay_scales, load_classifier
from paddlemix_eva.utils.resources import sample_image_path


def tiny_clip() -> EVACLIP:
    paddle.seed(0)
    return EVACLIP(EVACLIPConfig(
        embed_dim=16,
        vision_cfg=dict(image_size=28, patch_size=14, width=64, layers=1, head_width=32, mlp_ratio=2.6667,
                        qkv_bias=True, rope=True, intp_freq=True, naiveswiglu=True, subln=True),
        text_cfg=dict(width=32, heads=2, layers=1, vocab_size=49408),
    ))


def tiny_mae_pretraining(tmp_path) -> str:
    paddle.seed(0)
    config = zoo.get_entry("mae_vit_base_patch16").build_config(
        image_size=32, patch_size=8, embed_dim=64, layers=2, num_heads=2, decoder_embed_dim=32, decoder_layers=1,
        decoder_num_heads=2)
    MAEForPretraining(config).save_pretrained(str(tmp_path / "mae_pt"))
    return str(tmp_path / "mae_pt")


# ------------------------------------------------------------------------------------ EVA-CLIP size
def test_resized_evaclip_tower_saves_and_reloads_its_new_size(tmp_path):
    model = tiny_clip()
    model.set_input_size(42)
    assert model.config.vision_config.image_size == 42 == model.config.preprocessing.image_size
    assert model.config.vision_cfg["image_size"] == 42
    model.save_pretrained(str(tmp_path))
    with open(tmp_path / "config.json") as f:
        saved = json.load(f)
    assert saved["vision_cfg"]["image_size"] == 42 == saved["vision_config"]["image_size"]
    reloaded = EVACLIP.from_pretrained(str(tmp_path))
    assert reloaded.config.vision_config.image_size == 42
    assert reloaded.visual.pos_embed.shape == model.visual.pos_embed.shape == [1, 1 + 9, 64]
    np.testing.assert_array_equal(reloaded.visual.pos_embed.numpy(), model.visual.pos_embed.numpy())


# ------------------------------------------------------------------------------------ zero-shot CLI
def test_predict_with_labels_is_zero_shot_for_clip_and_refused_for_classifiers(tmp_path, capsys):
    tiny_clip().save_pretrained(str(tmp_path / "clip"))
    image = sample_image_path()
    assert cli.main(["predict", image, "--model", str(tmp_path / "clip"), "--labels", "cat, dog,bird"]) == 0
    out = capsys.readouterr().out
    shown = [line.split()[-1] for line in out.splitlines()[1:]]
    assert sorted(shown) == ["bird", "cat", "dog"]
    scores = [float(line.split()[0]) for line in out.splitlines()[1:]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-3)
    (tmp_path / "labels.txt").write_text("red car\nblue boat\n")
    assert cli.main(["predict", image, "--model", str(tmp_path / "clip"), "--labels", str(tmp_path / "labels.txt"),
                     "--topk", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(maxsplit=2)[2] in ("red car", "blue boat")
    with pytest.raises(SystemExit) as stop:
        cli.main(["predict", image, "--model", str(tmp_path / "clip")])
    assert stop.value.code == 2 and "--labels" in capsys.readouterr().err
    model = zoo.get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=28, layers=1, num_classes=3)
    model.save_pretrained(str(tmp_path / "classifier"))
    with pytest.raises(SystemExit):
        cli.main(["predict", image, "--model", str(tmp_path / "classifier"), "--labels", "cat,dog"])
    assert "not a CLIP model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["predict", image, "--model", str(tmp_path / "clip"), "--labels", "cat,,dog"])
    assert "empty class name" in capsys.readouterr().err


# ------------------------------------------------------------------ loading any family's checkpoints
def test_fine_tuning_and_prediction_load_mae_and_evo_checkpoints(tmp_path):
    pretrained = tiny_mae_pretraining(tmp_path)
    classifier = load_classifier(pretrained, num_classes=4)
    assert type(classifier) is MAEVisionTransformer and classifier.config.num_classes == 4
    assert classifier.config.preprocessing.mean == IMAGENET_MEAN  # MAE's, carried from the pre-training config
    classifier.config.class_names = ["a", "b", "c", "d"]
    classifier.save_pretrained(str(tmp_path / "mae_ft"))
    loaded = load_classifier_for_inference(str(tmp_path / "mae_ft"))
    result = inference_model(loaded, sample_image_path())
    assert {name for _, _, name in result["topk"]} == {"a", "b", "c", "d"}
    evo = zoo.get_model("evo_deit_tiny_patch16_224", image_size=32, layers=2, stage_starts=[1], tradeoffs=[1, 1],
                        num_classes=3)
    evo.save_pretrained(str(tmp_path / "evo"))
    assert type(load_classifier(str(tmp_path / "evo"), num_classes=5)) is EvoDeiT
    with pytest.raises(ValueError, match="not an image classifier and does not fine-tune into one"):
        tiny_clip().save_pretrained(str(tmp_path / "clip")) or load_classifier(str(tmp_path / "clip"), 3)


# ------------------------------------------------------------------------- preprocessing and labels
def test_inference_reads_the_declared_preprocessing():
    config = zoo.get_entry("mae_finetuned_vit_base").build_config(crop_pct=0.9, interpolation="bilinear")
    transform = eval_transform(config)
    assert transform.resize_to == int(224 / 0.9) and transform.interpolation == 2  # PIL's BILINEAR
    np.testing.assert_allclose(transform.normalize.mean.ravel(), IMAGENET_MEAN)
    exported = {"image_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0}
    assert Preprocessing.from_config(exported) == Preprocessing(64, (0.5,) * 3, (0.25,) * 3, 1.0, "bicubic")
    paddlemix_style = {"image_size": 224}  # PaddleMIX's config.json: EVA-02's preprocessing
    assert (Preprocessing.from_config(paddlemix_style)
            == zoo.get_entry("eva02_Ti_pt_in21k_p14").preprocessing.__class__(224))
    with pytest.raises(ValueError, match="interpolation 'cubic' is none of"):
        zoo.get_entry("mae_finetuned_vit_base").build_config(interpolation="cubic")
    with pytest.raises(ValueError, match="std must be positive"):
        zoo.get_entry("mae_finetuned_vit_base").build_config(std=[0.2, 0.0, 0.2])


def test_labels_follow_the_head():
    entry = zoo.get_entry("eva02_Ti_pt_in21k_ft_in1k_p14")
    config = entry.build_config()
    assert config.class_names == "imagenet-1k" and config.num_labels == 1000 and config.id2label[0] == "tench"
    assert config.label2id["tench"] == 0
    fresh = entry.build_config(num_classes=3)  # a new head: the old names go
    assert fresh.class_names is None and fresh.id2label == {0: "0", 1: "1", 2: "2"}
    named = entry.build_config(num_classes=2, class_names=["cat", "dog"])
    assert named.id2label == {0: "cat", 1: "dog"}
    from_id2label = type(config)(**{**entry.config, "num_classes": 2, "class_names": None,
                                    "id2label": {"0": "cat", "1": "dog"}})
    assert from_id2label.class_names == ["cat", "dog"]
    with pytest.raises(ValueError, match="class_names has 2 names for num_classes=3"):
        zoo.get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=28, layers=1, num_classes=3, class_names=["a", "b"])
    with pytest.raises(TypeError, match="num_classes"):
        type(config)(num_labels=5)


# ---------------------------------------------------------------------------------------- layer ids
def test_layer_ids_come_from_the_module_tree():
    evo = zoo.get_model("evo_deit_tiny_patch16_224", image_size=32, layers=3, stage_starts=[1], tradeoffs=[1] * 3,
                        num_classes=3)
    ids = evo.layer_ids()
    assert ids["cls_token"] == ids["pos_embed"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.2.mlp.fc2.weight"] == 3 and ids["head.weight"] == ids["head_cls.weight"] == 4
    scales = layer_decay_scales(evo, 0.5)
    assert scales["head.weight"] == 1.0 and scales["blocks.0.attn.q_proj.weight"] == 0.5**3
    levit = zoo.get_model("evo_levit_128S")
    with pytest.raises(NotImplementedError, match="EvoLeViT has no layer-wise learning-rate decay"):
        levit.layer_ids()
