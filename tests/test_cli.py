"""The `paddlemix-eva` command line, run as real subprocesses (`python -m paddlemix_eva.cli`).

Every invocation spends ~5 s importing PaddleNLP, so the module runs all of them once, concurrently on both
cores (`cli_runs`, ~35 s on 2 cores: marked slow), and each test then checks one result. A usage error fails
before Paddle is imported and is checked on its own, quickly.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Sequence

import numpy as np
import pytest

from paddlemix_eva import zoo
from paddlemix_eva.utils.resources import imagenet_classnames, sample_image_path

from peers import import_timm, import_torch, make_sensitive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: parameter counts of timm's equivalents (pretrained=False), see parity_keymaps.md section 3.3
KNOWN_COUNTS = {
    "eva02_Ti_pt_in21k_ft_in1k_p14": "5,756,584",
    "eva02_S_pt_in21k_ft_in1k_p14": "22,129,000",
    "eva02_B_pt_in21k_ft_in1k_p14": "87,117,544",
    "eva02_L_pt_in21k_ft_in1k_p14": "305,080,232",
    "eva02_Ti_pt_in21k_p14": "5,699,968",  # timm's 5,502,144 + lm_head 192x1024+1024 + mask_token 192
}


def run_cli(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paddlemix_eva.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=timeout,
    )


def run_cli_concurrently(runs: Dict[str, Sequence[str]]) -> Dict[str, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {key: pool.submit(run_cli, *args) for key, args in runs.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Inputs (a 2-block timm Ti with a 1000-class head as .safetensors, and the same model converted in-process
    for `predict`), then every CLI invocation of this module."""
    timm = import_timm()
    torch = import_torch()
    from safetensors.torch import save_file

    from paddlemix_eva.convert import convert_checkpoint

    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, num_classes=1000, depth=2).eval()
    make_sensitive(model)
    with torch.no_grad():
        model.head.weight.mul_(20.0)  # spread the scores so the top 5 are well separated
    src = str(root / "tiny.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, src)
    model_dir = convert_checkpoint(src, "timm", out=str(root / "model"))
    from paddlemix_eva.models import EVA02VisionTransformer
    from paddlemix_eva.tasks.export import export_model

    exported = export_model(EVA02VisionTransformer.from_pretrained(model_dir), str(root / "exported"))
    corrupt = root / "corrupt.safetensors"
    with open(src, "rb") as f:
        corrupt.write_bytes(f.read()[:1000])
    paths = {
        "src": src,
        "model_dir": model_dir,
        "corrupt": str(corrupt),
        "missing": str(root / "nope.safetensors"),
        "no_model": str(root / "no_model"),
        **mixed_inputs(root),
        "exported": exported,
        "out_export": str(root / "out_export"),
        **{f"out_{k}": str(root / f"out_{k}") for k in ("convert", "missing", "corrupt", "mislabelled")},
    }
    runs = run_cli_concurrently(
        {
            "list": ["list"],
            "list_Ti": ["list", "*Ti*"],
            "list_none": ["list", "*nothing-like-this*"],
            "convert": ["convert", src, "--format", "timm", "--out", paths["out_convert"]],
            "missing": ["convert", paths["missing"], "--format", "timm", "--out", paths["out_missing"]],
            "corrupt": ["convert", paths["corrupt"], "--format", "timm", "--out", paths["out_corrupt"]],
            "mislabelled": ["convert", src, "--format", "paddlemix", "--out", paths["out_mislabelled"]],
            "predict": ["predict", sample_image_path(), "--model", model_dir],
            "predict_no_model": ["predict", sample_image_path(), "--model", paths["no_model"]],
            "predict_mixed": ["predict", paths["gray"], paths["not_image"], paths["rgba"], "--model", model_dir],
            "predict_mim": ["predict", sample_image_path(), "--model", "eva02_Ti_pt_in21k_p14"],
            "export": ["export", "--model", model_dir, "--out", paths["out_export"], "--input-size", "112"],
            "predict_inference": ["predict", sample_image_path(), "--model", exported, "--backend", "inference"],
            "features": ["features", paths["image_dir"], "--model", model_dir, "--out", paths["features"]],
        }
    )
    return {"runs": runs, "paths": paths, "model": model}


def mixed_inputs(root) -> Dict[str, str]:
    """A grayscale and an RGBA image, a text file named like an image, and a folder holding all of them plus a
    README; paths by key."""
    from PIL import Image

    folder = root / "images"
    folder.mkdir()
    sample = Image.open(sample_image_path())
    sample.convert("L").save(folder / "gray.png")
    sample.convert("RGBA").save(folder / "rgba.png")
    sample.save(folder / "colour.jpg")
    (folder / "notes.jpg").write_text("a text file with an image suffix")
    (folder / "README.txt").write_text("not an image")
    return {"gray": str(folder / "gray.png"), "rgba": str(folder / "rgba.png"), "not_image": str(folder / "notes.jpg"),
            "image_dir": str(folder), "features": str(root / "features" / "feats.npy")}


def _table_rows(stdout: str) -> List[List[str]]:
    lines = stdout.strip().splitlines()
    assert lines[0].split()[0] == "model" and set(lines[1].replace(" ", "")) == {"-"}, stdout
    return [line.split() for line in lines[2:]]


def _assert_clean_failure(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------------------------- list
@pytest.mark.slow
def test_list_prints_every_model_with_counted_parameters(cli_runs):
    result = cli_runs["runs"]["list"]
    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout)
    by_name = {row[0]: row for row in rows}
    assert [row[0] for row in rows] == zoo.list_models()
    for name, count in KNOWN_COUNTS.items():
        assert by_name[name][4] == count, by_name[name]
    for row in rows:
        entry = zoo.get_entry(row[0])
        assert row[1] == entry.task
        if entry.task != "mim-pretrain":
            assert re.fullmatch(r"\d{1,3}(,\d{3})+", row[4]), row
    assert by_name["eva02_L_pt_in21k_medft_in21k_ft_in1k_p14"][6] == "89.9"
    for name, gmacs in (("eva02_Ti_pt_in21k_ft_in1k_p14", 4.68), ("eva02_S_pt_in21k_ft_in1k_p14", 15.48),
                        ("eva02_B_pt_in21k_ft_in1k_p14", 107.11), ("eva02_L_pt_in21k_ft_in1k_p14", 362.33)):
        assert float(by_name[name][5]) == pytest.approx(gmacs, rel=0.005)  # the README says "within 0.5%"
    assert by_name["eva02_B_pt_in21k_p14to16"][3] == "16"


@pytest.mark.slow
def test_list_pattern_filters(cli_runs):
    result = cli_runs["runs"]["list_Ti"]
    assert result.returncode == 0, result.stderr
    names = [row[0] for row in _table_rows(result.stdout)]
    # shell-style and case-insensitive, like the library's filter: `*Ti*` also finds `evo_deit_tiny_...`
    assert names == [n for n in zoo.list_models() if "ti" in n.lower()] and len(names) >= 2
    assert {"eva02_Ti_pt_in21k_p14", "evo_deit_tiny_patch16_224"} <= set(names)
    assert "5,756,584" in result.stdout and "22,129,000" not in result.stdout


@pytest.mark.slow
def test_list_pattern_without_match(cli_runs):
    result = cli_runs["runs"]["list_none"]
    _assert_clean_failure(result)
    assert result.stdout == "" and "no model matches" in result.stderr


# -------------------------------------------------------------------------------------------- convert
@pytest.mark.slow
def test_convert_timm_file(cli_runs):
    import paddle

    from paddlemix_eva.models import EVA02VisionTransformer

    result, out = cli_runs["runs"]["convert"], cli_runs["paths"]["out_convert"]
    assert result.returncode == 0, result.stderr
    assert out in result.stdout
    assert sorted(os.listdir(out)) == ["config.json", "model_state.pdparams"]
    model = EVA02VisionTransformer.from_pretrained(out)
    assert (model.config.layers, model.config.embed_dim, model.config.num_classes) == (2, 192, 1000)
    ref = cli_runs["model"]
    np.testing.assert_array_equal(model.head.weight.numpy(), ref.head.weight.detach().numpy().T)
    images = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    torch = import_torch()
    with torch.no_grad():
        expected = ref(torch.from_numpy(images)).numpy()
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(images)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)  # head x20: logits up to ~20


def test_convert_bad_format_is_a_usage_error(tmp_path):
    src = tmp_path / "weights.safetensors"
    src.write_bytes(b"never read")
    result = run_cli("convert", str(src), "--format", "pytorch", "--out", str(tmp_path / "out"))
    _assert_clean_failure(result)
    assert "invalid choice: 'pytorch'" in result.stderr and "timm" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_convert_missing_file(cli_runs):
    result = cli_runs["runs"]["missing"]
    _assert_clean_failure(result)
    assert "weight file not found" in result.stderr and cli_runs["paths"]["missing"] in result.stderr
    assert not os.path.exists(cli_runs["paths"]["out_missing"])


@pytest.mark.slow
def test_convert_corrupt_file(cli_runs):
    result = cli_runs["runs"]["corrupt"]
    _assert_clean_failure(result)
    assert cli_runs["paths"]["corrupt"] in result.stderr and "truncated or corrupt" in result.stderr
    assert not os.path.exists(cli_runs["paths"]["out_corrupt"])


@pytest.mark.slow
def test_convert_mislabelled_format(cli_runs):
    result = cli_runs["runs"]["mislabelled"]
    _assert_clean_failure(result)
    assert "not PaddleMIX" in result.stderr and "--format timm" in result.stderr
    assert not os.path.exists(cli_runs["paths"]["out_mislabelled"])


# -------------------------------------------------------------------------------------------- predict
@pytest.mark.slow
def test_predict_sample_image(cli_runs):
    from paddlemix_eva.tasks.inference import inference_model

    result = cli_runs["runs"]["predict"]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.rstrip("\n").splitlines()
    assert lines[0] == sample_image_path()
    score_lines = lines[1:]
    assert len(score_lines) == 5, result.stdout
    names = imagenet_classnames()
    parsed = []
    for line in score_lines:
        match = re.fullmatch(r"\s+(\d\.\d{4})\s+(\d+)\s+(.+)", line)
        assert match, line
        score, label, name = float(match.group(1)), int(match.group(2)), match.group(3)
        assert name == names[label]
        parsed.append((label, score))
    scores = [s for _, s in parsed]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-3

    expected = inference_model(cli_runs["paths"]["model_dir"], sample_image_path())
    assert [label for label, _ in parsed] == [label for label, _, _ in expected["topk"]]
    np.testing.assert_allclose(scores, [s for _, s, _ in expected["topk"]], atol=1e-4)


@pytest.mark.slow
def test_predict_missing_model_dir(cli_runs):
    result = cli_runs["runs"]["predict_no_model"]
    _assert_clean_failure(result)
    assert cli_runs["paths"]["no_model"] in result.stderr


@pytest.mark.slow
def test_predict_continues_past_an_unreadable_image(cli_runs):
    from paddlemix_eva.tasks.inference import inference_model

    result, paths = cli_runs["runs"]["predict_mixed"], cli_runs["paths"]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    blocks = result.stdout.split(paths["rgba"])
    assert "error:" in blocks[0] and "not an image" in blocks[0]
    expected = inference_model(paths["model_dir"], paths["rgba"])
    assert f"{expected['pred_label']:6d}  {expected['pred_class']}" in blocks[1]
    assert "1 of 3 images could not be read" in result.stderr


@pytest.mark.slow
def test_predict_refuses_a_model_without_a_classification_head(cli_runs):
    result = cli_runs["runs"]["predict_mim"]
    _assert_clean_failure(result)
    assert "without a classification head" in result.stderr


@pytest.mark.slow
def test_features_of_a_folder_with_mixed_content(cli_runs):
    from paddlemix_eva.models import EVA02VisionTransformer
    from paddlemix_eva.tasks.inference import extract_features

    result, paths = cli_runs["runs"]["features"], cli_runs["paths"]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr  # one unreadable file
    assert "notes.jpg" in result.stderr and "README.txt" in result.stderr
    features = np.load(paths["features"])
    listing = open(paths["features"].replace(".npy", ".files.txt")).read().split()
    assert listing == ["colour.jpg", "gray.png", "rgba.png"] and features.shape == (3, 192)
    model = EVA02VisionTransformer.from_pretrained(paths["model_dir"])
    expected, _ = extract_features(model, [os.path.join(paths["image_dir"], name) for name in listing])
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_export_writes_a_loadable_model_at_the_requested_size(cli_runs):
    import json

    from paddlemix_eva.tasks.export import load_exported

    result, out = cli_runs["runs"]["export"], cli_runs["paths"]["out_export"]
    assert result.returncode == 0, result.stderr
    assert "--backend inference" in result.stdout
    assert {"model.json", "model.pdiparams", "config.json", "export.json"} <= set(os.listdir(out))
    assert json.load(open(os.path.join(out, "export.json")))["input_size"] == 112
    exported = load_exported(out)
    assert exported(np.zeros((2, 3, 112, 112), np.float32)).shape == (2, 1000)


@pytest.mark.slow
def test_predict_with_the_inference_backend_agrees_with_the_model(cli_runs):
    dygraph, inference = cli_runs["runs"]["predict"], cli_runs["runs"]["predict_inference"]
    assert inference.returncode == 0, inference.stderr
    lines = lambda r: [l.split() for l in r.stdout.splitlines()[1:]]  # noqa: E731,E741
    assert [row[1:] for row in lines(inference)] == [row[1:] for row in lines(dygraph)]  # labels and names
    np.testing.assert_allclose([float(r[0]) for r in lines(inference)], [float(r[0]) for r in lines(dygraph)],
                               atol=2e-4)


def test_predict_threads_set_the_eager_kernels_too(tiny_eva02_config, tmp_path, capsys):
    """`--threads` acts on the default (dygraph) backend as well; without it, predict uses every core."""
    from paddlemix_eva.cli import main
    from paddlemix_eva.models import EVA02VisionTransformer
    from paddlemix_eva.utils import runtime

    EVA02VisionTransformer(tiny_eva02_config).save_pretrained(str(tmp_path / "model"))
    assert main(["predict", sample_image_path(), "--model", str(tmp_path / "model"), "--threads", "1"]) == 0
    assert runtime.current_cpu_threads() == 1
    assert main(["predict", sample_image_path(), "--model", str(tmp_path / "model")]) == 0
    assert runtime.current_cpu_threads() == (os.cpu_count() or 1)
    assert capsys.readouterr().out.count(sample_image_path()) == 2
