"""`inference_model` / `extract_features` on every kind of input, their preprocessing, and the FLOP counter."""
import math
import os

import numpy as np
import paddle
import pytest
from PIL import Image

import paddlemix_eva

# isort: split
from paddlemix_eva import zoo
from paddlemix_eva.data.transforms import CLIP_MEAN, CLIP_STD
from paddlemix_eva.models import EVA02VisionTransformer
from paddlemix_eva.tasks import zoo_stats
from paddlemix_eva.tasks.flops import count_macs
from paddlemix_eva.tasks.inference import extract_features, inference_model, list_image_files

#: published GMACs of the EVA-02 fine-tuned models (EVA-02 paper / timm tables)
PUBLISHED_GMACS = {
    "eva02_Ti_pt_in21k_ft_in1k_p14": 4.68,
    "eva02_S_pt_in21k_ft_in1k_p14": 15.48,
    "eva02_B_pt_in21k_ft_in1k_p14": 107.11,
    "eva02_L_pt_in21k_ft_in1k_p14": 362.33,
}


@pytest.fixture
def classifier(tiny_eva02_config):
    tiny_eva02_config.crop_pct = 0.875
    model = EVA02VisionTransformer(tiny_eva02_config)
    with paddle.no_grad():  # a spread-out head so the top-k order is well defined
        model.head.weight.set_value(model.head.weight * 50.0)
    return model.eval()


@pytest.fixture
def photo():
    """A non-square RGB image with structure (a gradient plus noise)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:90, 0:120]
    base = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1) % 256
    return (base + rng.integers(0, 40, base.shape)).clip(0, 255).astype(np.uint8)


def reference_preprocess(img: Image.Image, size: int, crop_pct: float) -> np.ndarray:
    """The eval preprocessing written out step by step with PIL."""
    short = int(math.floor(size / crop_pct))
    w, h = img.size
    if w < h:
        new_w, new_h = short, round(h * short / w)
    else:
        new_w, new_h = round(w * short / h), short
    img = img.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, np.float32) / 255.0
    return ((x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)).transpose(2, 0, 1)


def manual_probs(model, arrays):
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.stack(arrays))).numpy().astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_every_input_kind_gives_the_manual_prediction(classifier, photo, tmp_path):
    path = str(tmp_path / "photo.png")
    Image.fromarray(photo).save(path)
    expected = manual_probs(classifier, [reference_preprocess(Image.fromarray(photo), 56, 0.875)])[0]
    order = np.argsort(-expected)[:5]
    for image in (path, Image.fromarray(photo), photo):
        result = inference_model(classifier, image)
        assert [label for label, _, _ in result["topk"]] == list(order)
        np.testing.assert_allclose([s for _, s, _ in result["topk"]], expected[order], rtol=1e-5, atol=1e-6)
        assert result["pred_label"] == order[0] and result["pred_class"] == str(order[0])
    flipped = photo[:, ::-1].copy()
    batch_expected = manual_probs(
        classifier, [reference_preprocess(Image.fromarray(a), 56, 0.875) for a in (photo, flipped)]
    )
    for batch in ([path, flipped], np.stack([photo, flipped])):
        results = inference_model(classifier, batch, batch_size=1)
        assert len(results) == 2
        for result, probs in zip(results, batch_expected):
            assert result["pred_label"] == int(np.argmax(probs))
            assert result["pred_score"] == pytest.approx(float(probs.max()), rel=1e-5)


def test_package_level_api_names(classifier, photo):
    assert paddlemix_eva.inference_model is inference_model
    assert paddlemix_eva.extract_features is extract_features
    assert "eva02_Ti_pt_in21k_ft_in1k_p14" in paddlemix_eva.list_models("*Ti*")
    model = paddlemix_eva.get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=56, layers=1)
    assert model.config.image_size == 56 and len(model.blocks) == 1


def test_class_names_of_a_finetuned_model_are_reported(classifier, photo):
    classifier.config.class_names = [f"digit {i}" for i in range(10)]
    result = inference_model(classifier, photo)
    assert result["pred_class"] == f"digit {result['pred_label']}"


def test_grayscale_and_rgba_images_are_converted(classifier, photo, tmp_path):
    gray = Image.fromarray(photo).convert("L")
    rgba = Image.fromarray(photo).convert("RGBA")
    for img, name in ((gray, "gray.png"), (rgba, "rgba.png")):
        img.save(tmp_path / name)
        expected = manual_probs(classifier, [reference_preprocess(img.convert("RGB"), 56, 0.875)])[0]
        result = inference_model(classifier, str(tmp_path / name))
        assert result["pred_score"] == pytest.approx(float(expected.max()), rel=1e-5)
    result = inference_model(classifier, np.asarray(gray))  # HxW array
    assert result["pred_label"] == int(np.argmax(manual_probs(
        classifier, [reference_preprocess(gray.convert("RGB"), 56, 0.875)])[0]))


def test_unreadable_inputs_are_named_and_a_batch_continues(classifier, photo, tmp_path, caplog):
    good = str(tmp_path / "good.png")
    Image.fromarray(photo).save(good)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        inference_model(classifier, missing)
    with pytest.raises(ValueError, match="notes.png is not an image"):
        inference_model(classifier, str(text))
    with pytest.raises(ValueError, match="is a directory"):
        inference_model(classifier, str(tmp_path))
    results = inference_model(classifier, [missing, good, str(text), good], batch_size=2)
    assert "error" in results[0] and "missing.jpg" in results[0]["error"]
    assert "error" in results[2] and "not an image" in results[2]["error"]
    assert results[1]["pred_label"] == results[3]["pred_label"] == inference_model(classifier, good)["pred_label"]
    assert "skipping" in caplog.text


def test_extract_features_pooled_and_patch_tokens(classifier, photo, tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[::-1].copy()).save(folder / "sub" / "b.jpg")
    (folder / "readme.txt").write_text("ignored")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    files = list_image_files(str(folder))
    assert [os.path.relpath(f, folder) for f in files] == ["a.png", "broken.png", os.path.join("sub", "b.jpg")]
    features, errors = extract_features(classifier, files, batch_size=2)
    assert features.shape == (2, 128) and errors[0] is None and errors[2] is None and "broken.png" in errors[1]
    batch = paddle.to_tensor(np.stack([reference_preprocess(Image.open(f).convert("RGB"), 56, 0.875)
                                       for f in (files[0], files[2])]))
    with paddle.no_grad():
        np.testing.assert_allclose(features, classifier.extract_feat(batch).numpy(), rtol=1e-5, atol=1e-5)
        tokens, _ = extract_features(classifier, files[0], patch_tokens=True)
        assert tokens.shape == (1, 16, 128)
        np.testing.assert_allclose(tokens, classifier.extract_feat(batch[:1], patch_tokens=True).numpy(),
                                   rtol=1e-5, atol=1e-5)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        list_image_files(str(empty))


def test_models_without_a_trained_head_are_refused_for_prediction():
    with pytest.raises(ValueError, match="mim model without a classification head"):
        inference_model("eva02_Ti_pt_in21k_p14", np.zeros((8, 8, 3), np.uint8))


# ----------------------------------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize("name", ["eva02_Ti_pt_in21k_ft_in1k_p14", "eva02_S_pt_in21k_ft_in1k_p14"])
def test_counted_macs_agree_with_the_published_table(name):
    model = zoo.get_model(name)
    counted = count_macs(model, model.config.image_size).total
    assert counted / 1e9 == pytest.approx(PUBLISHED_GMACS[name], rel=0.02)
    assert zoo_stats.count_image_macs(name) == counted  # the depth-extrapolated count of `paddlemix-eva list`


@pytest.mark.parametrize("name", ["eva02_B_pt_in21k_ft_in1k_p14", "eva02_L_pt_in21k_ft_in1k_p14"])
def test_large_models_agree_with_the_published_table(name):
    assert zoo_stats.count_image_macs(name) / 1e9 == pytest.approx(PUBLISHED_GMACS[name], rel=0.02)


def test_mac_counter_follows_the_shapes_actually_seen(tiny_eva02_config):
    """Linear, conv and attention terms of a 2-block model add up to the closed form; a smaller input costs less."""
    model = EVA02VisionTransformer(tiny_eva02_config)
    c56 = count_macs(model, 56)
    tokens, dim, hidden = 17, 128, int(128 * 2.6667)
    block = tokens * (4 * dim * dim + 3 * dim * hidden) + 2 * tokens * tokens * dim
    expected = 2 * block + 16 * 3 * 14 * 14 * dim + dim * 10
    assert c56.total == expected, c56.by_kind
    model.set_input_size(28)
    assert count_macs(model, 28).total < expected
