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


def _script(relative_path: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", relative_path), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def _refused(result: subprocess.CompletedProcess, *expected: str) -> str:
    """The one error line of a refused command (exit 2, no traceback), checked to hold every `expected` text."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture
def a_file(tmp_path) -> str:
    path = tmp_path / "a_file"
    path.write_text("not a directory")
    return str(path)


#: a place no process can create files in, root included (permission bits do not stop root)
READ_ONLY = "/proc/paddlemix-eva-out"


#: (flags, texts the error line must hold) of the fine-tuning script; `{file}` is an existing file
TRAINING_FLAG_CASES = [
    (["--per_device_train_batch_size", "0"], ["--per_device_train_batch_size 0", ">= 1"]),
    (["--per_device_train_batch_size", "-4"], ["--per_device_train_batch_size -4", ">= 1"]),
    (["--per_device_eval_batch_size", "0"], ["--per_device_eval_batch_size 0", ">= 1"]),
    (["--output_dir", "{file}"], ["--output_dir {file} is a file; expected a directory"]),
    (["--output_dir", "{file}/run"], ["--output_dir {file}/run: {file} is a file"]),
    (["--output_dir", READ_ONLY], [f"--output_dir {READ_ONLY}: /proc is not writable"]),
    (["--lerning_rate", "0.1"], ["unknown flag --lerning_rate (did you mean --learning_rate?)"]),
]
#: (script, flags, texts the error line must hold) of the evaluation scripts
EVALUATION_FLAG_CASES = [
    ("eva02/run_eva02_finetune_eval.py", ["--per_device_eval_batch_size", "0"],
     ["--per_device_eval_batch_size 0", ">= 1"]),
    ("eva02/run_eva02_finetune_eval.py", ["--output_dir", "{file}"], ["--output_dir {file} is a file"]),
    ("evaclip/run_retrieval_eval.py", ["--output_dir", "{file}/report", "--data_path", "x.json", "--image_root", "."],
     ["--output_dir {file}/report: {file} is a file"]),
    ("evaclip/run_zero_shot_eval.py", ["--output_dir", "{file}"], ["--output_dir {file} is a file"]),
    ("evaclip/run_zero_shot_eval.py", ["--per_device_eval_batch_size", "0"], ["--per_device_eval_batch_size", ">= 1"]),
    ("evaclip/run_zero_shot_eval.py", ["--temlates", "t.txt"], ["unknown flag --temlates (did you mean --templates?)"]),
]


@pytest.fixture(scope="module")
def refused_script_runs(tmp_path_factory):
    """The command lines of TRAINING_FLAG_CASES and EVALUATION_FLAG_CASES, all run by one interpreter
    (`launch.run_in_one_process`; each would spend most of its time importing PaddleNLP): (the existing file
    named `{file}`, the working folder, {case key: result})."""
    from launch import run_in_one_process

    root = tmp_path_factory.mktemp("refused")
    a_file = root / "a_file"
    a_file.write_text("not a directory")
    data = _folder(root / "val", ["cat", "dog"])
    cases = {}
    for i, (flags, _) in enumerate(TRAINING_FLAG_CASES):
        flags = [f.replace("{file}", str(a_file)) for f in flags]
        for flag, value in {"--output_dir": str(root / f"out{i}"), "--data_path": str(root / "no_data")}.items():
            if flag not in flags:
                flags += [flag, value]
        cases["train", i] = ("eva02/run_eva02_finetune_dist.py", flags)
    for i, (script, flags, _) in enumerate(EVALUATION_FLAG_CASES):
        flags = [f.replace("{file}", str(a_file)) for f in flags]
        if "retrieval" not in script:
            flags += ["--model", "no/such/model", "--eval_data_path" if "finetune" in script else "--data_path", data]
        cases["eval", i] = (script, flags)
    results = run_in_one_process([(os.path.join(ROOT, "examples", s), f) for s, f in cases.values()], cwd=ROOT)
    runs = {key: subprocess.CompletedProcess(args, r["returncode"], r["stdout"], r["stderr"])
            for (key, (_, args)), r in zip(cases.items(), results)}
    return str(a_file), root, runs


@pytest.mark.parametrize("case", range(len(TRAINING_FLAG_CASES)))
def test_training_script_flags_are_refused_before_any_work(case, refused_script_runs):
    """`--data_path` does not exist: a run that got past the flags would fail on it instead."""
    flags, expected = TRAINING_FLAG_CASES[case]
    if READ_ONLY in flags and not os.path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    a_file, root, runs = refused_script_runs
    _refused(runs["train", case], *[e.replace("{file}", a_file) for e in expected])
    assert not (root / f"out{case}").exists()


@pytest.mark.parametrize("case", range(len(EVALUATION_FLAG_CASES)))
def test_evaluation_script_flags_are_refused_before_the_evaluation(case, refused_script_runs):
    a_file, _, runs = refused_script_runs
    _refused(runs["eval", case], *[e.replace("{file}", a_file) for e in EVALUATION_FLAG_CASES[case][2]])


def _write_model_dir(config, path, edit=None, text=None) -> str:
    """A saved tiny model whose config.json gets `edit` (field -> JSON value) or is replaced by `text`."""
    import json

    model_dir = _classifier_dir(config, path)
    config_file = os.path.join(model_dir, "config.json")
    if text is not None:
        with open(config_file, "w") as f:
            f.write(text)
    if edit:
        with open(config_file) as f:
            fields = json.load(f)
        fields.update(edit)
        with open(config_file, "w") as f:
            json.dump(fields, f)
    return model_dir


@pytest.mark.parametrize("edit, text, expected", [
    ({"embed_dim": "192"}, None, ["config.json: field 'embed_dim' is the string \"192\"; expected an integer"]),
    ({"image_size": "large"}, None, ["field 'image_size' is the string \"large\"; expected an integer"]),
    ({"mean": "clip"}, None, ["field 'mean' is the string \"clip\"; expected a list of numbers or null"]),
    ({"qkv_bias": 1}, None, ["field 'qkv_bias' is the number 1; expected true or false"]),
    (None, '{"embed_dim": 128,', ["config.json is not valid JSON", "line 1"]),
])
def test_a_config_json_of_wrong_types_is_named(edit, text, expected, tiny_eva02_config, tmp_path):
    model_dir = _write_model_dir(tiny_eva02_config, tmp_path / "model", edit, text)
    line = _refused(_cli("predict", sample_image_path(), "--model", model_dir), *expected)
    assert os.path.join(model_dir, "config.json") in line


def test_config_types_are_checked_for_every_family_and_nested_towers(tmp_path):
    """The check is the base class's: an EVA-CLIP text tower's field inside config.json is named with its path."""
    import json

    from paddlemix_eva import zoo
    from paddlemix_eva.models.evaclip import EVACLIPConfig

    config = zoo.build_config(zoo.get_entry("EVA02-CLIP-B-16"), EVACLIPConfig).to_dict()
    config["text_cfg"]["width"] = "512"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"field 'text_cfg.width' is the string \"512\"; expected an integer"):
        EVACLIPConfig.from_pretrained(str(tmp_path))
    config["text_cfg"]["width"] = 512
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert EVACLIPConfig.from_pretrained(str(tmp_path)).text_config.width == 512


@pytest.mark.parametrize("args, expected", [
    (["predict", "{img}", "--model", "x", "--topk", "0"], ["argument --topk: expected an integer >= 1, got 0"]),
    (["predict", "{img}", "--model", "x", "--batch-size", "0"], ["argument --batch-size: expected an integer >= 1"]),
    (["features", "{img}", "--model", "x", "--out", "f.npy", "--batch-size", "-1"],
     ["argument --batch-size: expected an integer >= 1, got -1"]),
    (["predict", "{img}", "--model", "./my_dir"], ["model directory ./my_dir does not exist"]),
    (["predict", "{img}", "--model", "~/no_such_model_dir"], ["model directory ~/no_such_model_dir does not exist"]),
    (["predict", "{img}", "--model", "EVA02-CLIP-B-16", "--labels", "nosuch.txt"],
     ["--labels nosuch.txt: no such file"]),
    (["predict", "{img}", "--model", "EVA02-CLIP-B-16", "--labels", "labels/classes"],
     ["--labels labels/classes: no such file"]),
    (["predict", "{img}", "--model", "EVA02-CLIP-B-16", "--labels", "cat"],
     ["at least 2 distinct class names", "'cat'"]),
    (["predict", "{img}", "--model", "EVA02-CLIP-B-16", "--labels", "cat,dog,cat"],
     ["duplicate class names ['cat']"]),
    (["predict", "{img}", "--model", "x", "--topp", "3"], ["unknown flag --topp (did you mean --topk?)"]),
    (["predcit", "{img}", "--model", "x"], ["invalid choice: 'predcit'", "did you mean predict?"]),
    (["predict", "{img}", "--model", "x", "--backend", "inferenc"], ["did you mean inference?"]),
    (["features", "{img}", "--model", "x", "--out", "{file}/f.npy"], ["--out {file}/f.npy: {file} is a file"]),
    (["features", "{img}", "--model", "x", "--out", "{dir}"], ["--out {dir}.npy"]),
    (["export", "--model", "x", "--out", "{file}"], ["--out {file} is a file; expected a directory"]),
    (["convert", "{img}", "--format", "timm", "--out", "{file}"], ["--out {file} is a file"]),
    (["mae-visualize", "{img}", "--model", "x", "--out", f"{READ_ONLY}/x.png"], ["/proc is not writable"]),
])
def test_cli_flags_are_refused_before_any_work(args, expected, a_file, tmp_path):
    """Every command names `x` as the model, which does not exist: a command past its flags would fail there."""
    if any(READ_ONLY in a for a in args) and not os.path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    (tmp_path / "d.npy").mkdir()
    values = {"{img}": sample_image_path(), "{file}": a_file, "{dir}": str(tmp_path / "d")}

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    _refused(_cli(*[fill(a) for a in args]), *[fill(e) for e in expected])


def test_the_python_api_refuses_counts_below_one_before_loading():
    """`no/such/model` is never reached: the counts are checked first."""
    from paddlemix_eva import inference_model
    from paddlemix_eva.tasks.evaluation import evaluate_classifier
    from paddlemix_eva.tasks.inference import extract_features

    with pytest.raises(ValueError, match="topk 0: expected an integer >= 1"):
        inference_model("no/such/model", sample_image_path(), topk=0)
    with pytest.raises(ValueError, match="batch_size -1: expected an integer >= 1"):
        extract_features("no/such/model", sample_image_path(), batch_size=-1)
    with pytest.raises(ValueError, match="batch_size 0: expected an integer >= 1"):
        evaluate_classifier(paddle.nn.Linear(2, 2), [], batch_size=0)


def test_parse_labels_reads_files_and_keeps_names_with_slashes(tmp_path):
    from paddlemix_eva.tasks.zeroshot import parse_labels

    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    assert parse_labels(str(labels)) == ["cat", "dog"]
    assert parse_labels("AC/DC, dog") == ["AC/DC", "dog"]
    labels.write_text("cat\ncat\n")
    with pytest.raises(ValueError, match=rf"--labels {labels}: duplicate class names \['cat'\]"):
        parse_labels(str(labels))


def test_zoo_names_with_slashes_are_still_names(tmp_path):
    from paddlemix_eva import zoo

    assert zoo.looks_like_path("./m") and zoo.looks_like_path("~/m") and zoo.looks_like_path("runs/m")
    assert not zoo.looks_like_path("paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_p14")
    with pytest.raises(KeyError, match="unknown model name 'paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_p15'"):
        zoo.get_entry("paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_p15")


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
