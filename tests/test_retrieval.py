"""Image-text retrieval: Recall@K on features with known answers, against a brute-force loop, and the example
script end to end on a tiny random EVA-CLIP."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image
from test_evaclip_training import _tiny_config  # the tiny EVA-CLIP of the CLIP tests

from paddlemix_eva.data.datasets import open_rgb
from paddlemix_eva.data.karpathy import CaptionedImage
from paddlemix_eva.models import EVACLIP
from paddlemix_eva.models.evaclip import get_tokenizer
from paddlemix_eva.tasks import retrieval
from paddlemix_eva.tasks.retrieval import evaluate_retrieval, recall_at_k

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "evaclip", "run_retrieval_eval.py")


# --------------------------------------------------------------------------------------------- recall
def test_recall_with_known_answers():
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[0, 1, 0],        # image 0's 1st caption: looks like image 1
                      [1, 0, 0],        # image 0's 2nd caption: the right one
                      [0, 1, 0],        # image 1: ties with image 0's 1st caption
                      [0.6, 0, 0.8]],   # image 2
                     np.float32)
    index = np.array([0, 0, 1, 2])
    out = recall_at_k(images, texts, index, ks=(1, 2, 3))
    # image->text ranks: 0 (2nd caption found), 1 (the tie counts against it), 0
    assert out["image_to_text"] == pytest.approx({"R@1": 200 / 3, "R@2": 100.0, "R@3": 100.0})
    # text->image ranks: 2 (image 1 beats it, image 2 ties), 0, 0, 0
    assert out["text_to_image"] == pytest.approx({"R@1": 75.0, "R@2": 75.0, "R@3": 100.0})


def test_ties_never_favour_the_right_answer():
    same = np.ones((4, 8), np.float32)
    out = recall_at_k(same, same, np.arange(4), ks=(1, 3, 4))
    for direction in ("image_to_text", "text_to_image"):
        assert out[direction] == {"R@1": 0.0, "R@3": 0.0, "R@4": 100.0}


def _brute_force(images, texts, index, ks):
    """One Python loop per query over exact (integer) scores: rank = wrong candidates scoring >= the right one."""
    scores = [[int(round(float(np.dot(i, t)))) for t in texts] for i in images]
    i2t, t2i = [], []
    for row in range(len(images)):
        best = max(scores[row][t] for t in range(len(texts)) if index[t] == row)
        i2t.append(sum(1 for t in range(len(texts)) if index[t] != row and scores[row][t] >= best))
    for t in range(len(texts)):
        right = scores[index[t]][t]
        t2i.append(sum(1 for row in range(len(images)) if row != index[t] and scores[row][t] >= right))
    return {"image_to_text": {f"R@{k}": 100.0 * np.mean([r < k for r in i2t]) for k in ks},
            "text_to_image": {f"R@{k}": 100.0 * np.mean([r < k for r in t2i]) for k in ks}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    num_images, dim, ks = 17, 4, (1, 2, 5, 10, 100)
    images = rng.integers(-2, 3, (num_images, dim)).astype(np.float32)  # small integers: exact scores, many ties
    index = np.repeat(np.arange(num_images), rng.integers(1, 6, num_images))
    index = index[rng.permutation(len(index))]  # captions of an image need not be adjacent
    texts = rng.integers(-2, 3, (len(index), dim)).astype(np.float32)
    expected = _brute_force(images, texts, index, ks)
    for chunk_size in (None, 1, 3):
        out = recall_at_k(images, texts, index, ks=ks, chunk_size=chunk_size)
        for direction in expected:
            assert out[direction] == pytest.approx(expected[direction]), (direction, chunk_size)


@pytest.mark.parametrize("change,message", [
    (dict(index=np.array([0, 0, 0])), "no caption"),
    (dict(index=np.array([0, 1])), "one image row per caption"),
    (dict(index=np.array([0, 1, 5])), "outside 0..1"),
    (dict(ks=(0, 5)), "positive integers"),
    (dict(nan=True), "NaN"),
])
def test_recall_refuses_bad_input(change, message):
    images, texts = np.eye(2, 3, dtype=np.float32), np.eye(3, dtype=np.float32)
    if change.get("nan"):
        texts[1, 1] = np.nan
    with pytest.raises(ValueError, match=message):
        recall_at_k(images, texts, change.get("index", np.array([0, 1, 1])), ks=change.get("ks", (1,)))


# --------------------------------------------------------------------------------------------- end to end
RECORDS = [
    {"image": "val2014/0.png", "caption": ["a red square.", "something red"], "image_id": "0"},
    {"image": "val2014/1.png", "caption": ["a green field"], "image_id": "1"},
    {"image": "val2014/corrupt.png", "caption": ["never read", "nor this"], "image_id": "c"},
    {"image": "val2014/2.png", "caption": ["blue sky", "a blue thing", "the colour blue"], "image_id": "2"},
    {"image": "val2014/3.png", "caption": ["yellow"], "image_id": "3"},
    {"image": "val2014/4.png", "caption": ["grey noise", "static"], "image_id": "4"},
]


@pytest.fixture
def retrieval_set(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "images" / "val2014").mkdir(parents=True)
    for i, size in enumerate([(32, 40), (50, 30), (28, 28), (64, 48), (30, 31)]):
        pixels = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / "val2014" / f"{i}.png")
    (tmp_path / "images" / "val2014" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ann = tmp_path / "coco_karpathy_test.json"
    ann.write_text(json.dumps(RECORDS))
    paddle.seed(0)
    model = EVACLIP(_tiny_config())
    model.save_pretrained(str(tmp_path / "model"))
    return tmp_path, model.eval()


def _reference_features(model, image_root):
    """The features computed directly: the model's declared preprocessing, one batch, normalised."""
    kept = [r for r in RECORDS if "corrupt" not in r["image"]]
    transform = model.config.preprocessing.eval_transform()
    pixels = np.stack([transform(open_rgb(os.path.join(image_root, r["image"]))) for r in kept])
    captions = [c for r in kept for c in r["caption"]]
    ids = get_tokenizer()(captions, context_length=model.config.text_config.context_length)
    with paddle.no_grad():
        image_features = model.encode_image(paddle.to_tensor(pixels), normalize=True).numpy()
        text_features = model.encode_text(paddle.to_tensor(ids), normalize=True).numpy()
    index = np.repeat(np.arange(len(kept)), [len(r["caption"]) for r in kept])
    return image_features, text_features, index


def test_script_end_to_end(retrieval_set):
    root, model = retrieval_set
    out = root / "out"
    cmd = [sys.executable, SCRIPT, "--model", str(root / "model"), "--data_path", str(root / "coco_karpathy_test.json"),
           "--image_root", str(root / "images"), "--output_dir", str(out), "--batch_size", "2", "--save_features"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "corrupt.png" in result.stderr and "retrieval_report.json" in result.stderr
    report = json.loads((out / "retrieval_report.json").read_text())
    for direction in ("image_to_text", "text_to_image"):
        assert list(report[direction]) == ["R@1", "R@5", "R@10"]
        assert all(0.0 <= v <= 100.0 for v in report[direction].values())
    assert (report["num_images"], report["num_texts"], report["skipped_images"]) == (5, 9, 1)
    saved = np.load(out / "features.npz")
    expected = _reference_features(model, str(root / "images"))
    np.testing.assert_allclose(saved["image_features"], expected[0], atol=1e-5)
    np.testing.assert_allclose(saved["text_features"], expected[1], atol=1e-5)
    np.testing.assert_array_equal(saved["text_image_index"], expected[2])
    assert saved["image_features"].dtype == np.float32
    recomputed = recall_at_k(saved["image_features"], saved["text_features"], saved["text_image_index"])
    for direction, values in recomputed.items():
        assert report[direction] == pytest.approx(values)


def test_script_refuses_a_bad_annotation_file(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": []}))
    cmd = [sys.executable, SCRIPT, "--model", str(tmp_path / "never_loaded"), "--data_path", str(ann),
           "--image_root", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "ann.json: expected a non-empty JSON array" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_bad_inputs_are_refused_before_the_model_loads(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps([{"image": "a.png", "caption": []}]))
    with pytest.raises(ValueError, match=r"ann.json: 1 image\(s\) have no caption.*a.png"):
        evaluate_retrieval("unused", str(ann), str(tmp_path))
    ann.write_text(json.dumps([{"image": "a.png", "caption": "a cat"}]))
    with pytest.raises(FileNotFoundError, match="image root not found"):
        evaluate_retrieval("unused", str(ann), str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="save_features needs an output_dir"):
        evaluate_retrieval("unused", str(ann), str(tmp_path), save_features=True)


def test_every_image_unreadable_is_refused(tmp_path):
    records = [CaptionedImage("missing.png", ["a cat"])]
    with pytest.raises(ValueError, match="none of the 1 images could be read"):
        retrieval.encode_retrieval_set(EVACLIP(_tiny_config()), records, str(tmp_path))


def test_a_model_without_a_text_tower_is_refused():
    with pytest.raises(ValueError, match="not an image-text model"):
        retrieval.load_clip_model("paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_ft_in1k_p14")
