"""EVA-CLIP's training recipe: per-parameter weight decay in AdamW and LAMB, the per-tower optimisation plan, towers
initialised from other models, and PaddleMIX's published command run on two processes."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddlemix_eva.models import EVACLIP, EVACLIPConfig
from paddlemix_eva.models.eva02 import EVA02VisionTransformerForMIM, EVA02VisionTransformerForMIMConfig
from paddlemix_eva.models.evaclip.towers import load_tower
from paddlemix_eva.trainer.base import check_device_arguments
from paddlemix_eva.trainer.clip import CLIPTrainingArguments, parameter_plan
from paddlemix_eva.trainer.optim import PerParameterDecayAdamW, PerParameterDecayLamb
from paddlemix_eva.utils import compat
from paddlemix_eva.utils.checkpoint import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VISION = dict(image_size=28, patch_size=14, width=64, layers=2, head_width=32, mlp_ratio=2.6667, qkv_bias=True,
              rope=True, intp_freq=True, naiveswiglu=True, subln=True)


def tiny_clip(seed: int = 0, text_layers: int = 2) -> EVACLIP:
    paddle.seed(seed)
    return EVACLIP(EVACLIPConfig(embed_dim=32, vision_cfg=VISION, text_cfg=dict(width=64, heads=2,
                                                                               layers=text_layers)))


def training_args(tmp_path, **kw) -> CLIPTrainingArguments:
    return CLIPTrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], **kw)


# ------------------------------------------------------------------------------ optimizers
def _three_params(seed: int):
    paddle.seed(seed)
    layer = paddle.nn.Sequential(paddle.nn.Linear(4, 5), paddle.nn.Linear(5, 3))
    return layer, [layer[0].weight, layer[1].weight, layer[1].bias]


def _steps(layer, optimizer, n: int = 3):
    rng = np.random.default_rng(0)
    for _ in range(n):
        layer(paddle.to_tensor(rng.standard_normal((6, 4)).astype(np.float32))).square().mean().backward()
        optimizer.step()
        optimizer.clear_grad()
    return [p.numpy() for p in layer.parameters()]


@pytest.mark.parametrize("kind", ["adamw", "lamb"])
def test_per_parameter_decay_equals_parameter_groups(kind):
    """A coefficient per parameter on a flat list does what Paddle's parameter groups do with one per group."""
    coefficients = [0.1, 0.3, 0.0]
    layer, params = _three_params(1)
    decay_of = {p.name: c for p, c in zip(params, coefficients)}
    twin, twin_params = _three_params(1)
    key = "lamb_weight_decay" if kind == "lamb" else "weight_decay"
    groups = [{"params": [p], key: c} for p, c in zip(twin_params, coefficients)]
    if kind == "lamb":
        ours = PerParameterDecayLamb(learning_rate=0.01, parameters=params, lamb_weight_decay=0.1, decay_of=decay_of)
        reference = paddle.optimizer.Lamb(learning_rate=0.01, parameters=groups, lamb_weight_decay=0.1)
    else:
        ours = PerParameterDecayAdamW(learning_rate=0.01, parameters=params, weight_decay=0.1, decay_of=decay_of)
        reference = paddle.optimizer.AdamW(learning_rate=0.01, parameters=groups, weight_decay=0.1)
    for got, want in zip(_steps(layer, ours), _steps(twin, reference)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["adamw", "lamb"])
def test_weight_decay_schedule_scales_every_coefficient(kind):
    """`WeightDecaySchedule` sets the global coefficient; per-parameter ones follow it in proportion."""
    layer, params = _three_params(2)
    decay_of = {params[0].name: 0.2, params[1].name: 0.4}
    twin, twin_params = _three_params(2)
    if kind == "lamb":
        ours = PerParameterDecayLamb(learning_rate=0.01, parameters=params, lamb_weight_decay=0.2, decay_of=decay_of)
        groups = [{"params": [p], "lamb_weight_decay": c} for p, c in zip(twin_params, (0.1, 0.2, 0.0))]
        reference = paddle.optimizer.Lamb(learning_rate=0.01, parameters=groups)
    else:
        ours = PerParameterDecayAdamW(learning_rate=0.01, parameters=params, weight_decay=0.2, decay_of=decay_of)
        groups = [{"params": [p], "weight_decay": c} for p, c in zip(twin_params, (0.1, 0.2, 0.0))]
        reference = paddle.optimizer.AdamW(learning_rate=0.01, parameters=groups)
    compat.set_weight_decay(ours, 0.1)  # half the initial 0.2: every coefficient halves
    for got, want in zip(_steps(layer, ours), _steps(twin, reference)):
        np.testing.assert_array_equal(got, want)


def test_lamb_decay_moves_weights():
    """The coefficient really reaches LAMB's update: zero gradients, only decay (through the trust ratio) acts."""
    layer, params = _three_params(3)
    opt = PerParameterDecayLamb(learning_rate=0.1, parameters=params, lamb_weight_decay=0.5,
                                decay_of={params[0].name: 0.5})
    before = [p.numpy().copy() for p in params]
    layer(paddle.zeros([2, 4])).sum().backward()
    opt.step()
    assert not np.array_equal(params[0].numpy(), before[0])  # decayed
    np.testing.assert_array_equal(params[1].numpy(), before[1])  # no decay, zero gradient: unchanged


# ------------------------------------------------------------------------ per-tower plan
def _paddlemix_layer_id(name: str, top: int) -> int:
    """PaddleMIX's name rule (`get_num_layer_for_transformer`), an independent check of the module-tree ids."""
    embeddings = ("patch_embed", "pos_embed", "cls_token", "positional_embedding", "token_embedding")
    if any(e in name for e in embeddings):
        return 0
    match = re.search(r"blocks\.([0-9]+)\.", name)
    return int(match.group(1)) + 1 if match else top


def test_parameter_plan_follows_paddlemix(tmp_path):
    model = tiny_clip(text_layers=3)
    args = training_args(tmp_path, learning_rate=5e-4, visual_lr=2e-4, text_lr=2e-5, weight_decay=0.02,
                         visual_wd=0.05, text_wd=0.1, layer_decay=0.9, visual_ld=0.75, text_ld=0.0)
    plan = parameter_plan(model, args)
    assert set(plan) == {n for n, _ in model.named_parameters()}
    no_decay = ("logit_scale", "visual.pos_embed", "visual.cls_token", "text.positional_embedding")
    for name, param in model.named_parameters():
        scale, decay = plan[name]
        if name.startswith("visual."):
            lr, wd, ld, top = 2e-4, 0.05, 0.75, 3
        elif name.startswith("text."):
            lr, wd, ld, top = 2e-5, 0.1, 0.9, 4  # text_ld 0 falls back to --layer_decay, as in PaddleMIX
        else:
            lr, wd, ld, top = 5e-4, 0.02, 1.0, 0
        layer = _paddlemix_layer_id(name.split(".", 1)[1], top) if top else 0
        np.testing.assert_allclose(scale * 5e-4, lr * ld ** (top - layer), rtol=1e-12, err_msg=name)
        decays = param.ndim > 1 and not name.endswith(".bias") and name not in no_decay
        assert decay == (wd if decays else 0.0), name


def test_trainer_builds_the_planned_optimizer(tmp_path):
    from paddlemix_eva.trainer.clip import CLIPTrainer, collate_image_text

    model = tiny_clip()
    args = training_args(tmp_path, optimizer="lamb", learning_rate=1e-3, visual_lr=5e-4, text_ld=0.5,
                         weight_decay=0.05, max_steps=1)
    trainer = CLIPTrainer(model=model, args=args, train_dataset=[None], data_collator=collate_image_text)
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    optimizer = trainer.optimizer
    assert isinstance(optimizer, PerParameterDecayLamb)
    plan = parameter_plan(model, args)
    for name, param in model.named_parameters():
        assert param.optimize_attr["learning_rate"] == pytest.approx(plan[name][0]), name
        assert optimizer._decay_of[param.name] == plan[name][1], name


def test_bad_recipe_flags_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--optimizer 'sgd'"):
        training_args(tmp_path, optimizer="sgd")
    with pytest.raises(ValueError, match="--visual_ld 1.5"):
        training_args(tmp_path, visual_ld=1.5)


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="group-sharded stage2 runs on CUDA")
def test_sharding_stage2_is_refused_on_cpu_with_the_alternative(tmp_path):
    args = training_args(tmp_path, sharding="stage2")
    with pytest.raises(ValueError, match="--sharding stage1"):
        check_device_arguments(args)


# ------------------------------------------------------------------------- tower init
def _mim_like_vision(tmp_path):
    """An EVA-02 MIM student whose trunk has the shape of the tiny CLIP's vision tower, saved as a directory."""
    config = EVA02VisionTransformerForMIMConfig(image_size=28, patch_size=14, embed_dim=64, layers=2, num_heads=2,
                                                mlp_ratio=2.6667, qkv_bias=True, naiveswiglu=True, subln=True,
                                                predict_feature_dim=48)
    paddle.seed(5)
    student = EVA02VisionTransformerForMIM(config)
    student.save_pretrained(str(tmp_path / "mim"))
    return student, str(tmp_path / "mim")


def test_vision_tower_from_an_eva02_mim_model(tmp_path):
    student, directory = _mim_like_vision(tmp_path)
    model = tiny_clip()
    fresh_head = model.visual.head.weight.numpy().copy()
    load_tower(model, "visual", directory)
    source = {k: v.numpy() for k, v in student.state_dict().items()}
    tower = {k: v.numpy() for k, v in model.visual.state_dict().items()}
    trunk = [k for k in tower if k.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed"))]
    # EVA-02-CLIP adds a LayerNorm inside attention that EVA-02 never had: it starts fresh, as upstream's does
    fresh = {k for k in trunk if ".inner_attn_ln." in k}
    assert len(trunk) - len(fresh) > 20 and fresh
    for key in sorted(set(trunk) - fresh):
        np.testing.assert_array_equal(tower[key], source[key], err_msg=key)
    for key in fresh:
        assert key not in source
        np.testing.assert_array_equal(tower[key], np.ones_like(tower[key]) if key.endswith("weight")
                                      else np.zeros_like(tower[key]))
    np.testing.assert_array_equal(tower["head.weight"], fresh_head)  # the MIM model has no CLIP projection
    assert "lm_head.weight" not in tower


def test_text_tower_from_another_clip_and_shape_mismatch(tmp_path):
    donor = tiny_clip(seed=9)
    donor.save_pretrained(str(tmp_path / "donor"))
    model = tiny_clip(seed=1)
    visual_before = model.visual.blocks[0].attn.q_proj.weight.numpy().copy()
    load_tower(model, "text", str(tmp_path / "donor"))
    for (name, got), (_, want) in zip(model.text.state_dict().items(), donor.text.state_dict().items()):
        np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=name)
    np.testing.assert_array_equal(model.visual.blocks[0].attn.q_proj.weight.numpy(), visual_before)
    wider = EVACLIP(EVACLIPConfig(embed_dim=32, vision_cfg=VISION, text_cfg=dict(width=96, heads=2, layers=2)))
    wider.save_pretrained(str(tmp_path / "wider"))
    with pytest.raises(CheckpointError, match="token_embedding.weight"):
        load_tower(model, "text", str(tmp_path / "wider"))
    _, mim = _mim_like_vision(tmp_path)
    with pytest.raises(CheckpointError, match="no text tower"):
        load_tower(model, "text", mim)


# ------------------------------------------------------------------ PaddleMIX's command
PADDLEMIX_COMMAND = (
    "--optimizer lamb --warmup_steps 2 --learning_rate 5e-4 --visual_lr 2e-4 --text_lr 2e-5 --weight_decay 0.05 "
    "--visual_wd 0.05 --text_wd 0.05 --layer_decay 1.0 --visual_ld 0.75 --text_ld 0.75 --adam_beta1 0.9 "
    "--adam_beta2 0.999 --adam_epsilon 1e-8 --max_grad_norm 5.0 --num_train_epochs 2 --tensor_parallel_degree 1 "
    "--sharding_parallel_degree 2 --sharding stage1 --bf16 False --local_loss true --gather_with_grad true "
    "--pretrained_text_model {donor} --classification_eval {val} --per_device_train_batch_size 8 "
    "--per_device_eval_batch_size 8 --save_steps 50000 --logging_steps 1 --disable_tqdm True "
    "--dataloader_num_workers 2 --patch_dropout 0.5"
)


@pytest.mark.slow
def test_paddlemix_command_runs_on_two_processes(tmp_path):
    """PaddleMIX's published EVA-CLIP command (sizes, steps, paths scaled down; stage1 for stage2 on CPU), with
    2 DataLoader workers over 2 epochs and FLIP patch dropout: every flag acts, zero-shot is logged at each
    evaluation and at the end."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_evaclip_training import COLOURS, TEMPLATE, _colour_image

    rng = np.random.default_rng(0)
    records = []
    (tmp_path / "train").mkdir()
    for i in range(32):
        name = sorted(COLOURS)[i % 4]
        _colour_image(COLOURS[name], rng).save(tmp_path / "train" / f"{i}.png")
        records.append({"image": f"train/{i}.png", "caption": TEMPLATE.format(name), "image_id": f"img{i}"})
    (tmp_path / "coco_karpathy_train.json").write_text(json.dumps(records))
    for name, rgb in COLOURS.items():
        (tmp_path / "val" / name).mkdir(parents=True)
        for i in range(2):
            _colour_image(rgb, rng).save(tmp_path / "val" / name / f"{i}.png")
    tiny_clip().save_pretrained(str(tmp_path / "model"))
    tiny_clip(seed=4).save_pretrained(str(tmp_path / "donor"))
    flags = PADDLEMIX_COMMAND.format(donor=tmp_path / "donor", val=tmp_path / "val").split()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
           str(tmp_path / "log"), os.path.join(ROOT, "examples", "evaclip", "run_pretrain_dist.py"), "--model",
           str(tmp_path / "model"), "--train_data", str(tmp_path / "coco_karpathy_train.json"), "--output_dir",
           str(out), "--evaluation_strategy", "steps", "--eval_steps", "2", *flags]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    log = (tmp_path / "log" / "workerlog.0").read_text(errors="replace")
    assert result.returncode == 0, log[-4000:]
    assert "optimizer PerParameterDecayLamb" in log and "text tower initialised from" in log
    with open(out / "trainer_state.json") as f:
        history = json.load(f)["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    evals = [e for e in history if "eval_zeroshot_top1" in e]
    assert len(losses) == 4 and all(np.isfinite(losses))  # 32 pairs / global batch 16 x 2 epochs
    assert len(evals) >= 2 and all(0 <= e["eval_zeroshot_top1"] <= 100 for e in evals)
    final = json.loads((out / "zeroshot_metrics.json").read_text())
    assert set(final) == {"eval_zeroshot_top1", "eval_zeroshot_top5"}
    assert list((out / "runs").rglob("vdlrecords*")), "no VisualDL records"
    reloaded = EVACLIP.from_pretrained(str(out))
    assert reloaded.config.embed_dim == 32 and reloaded.config.vision_config.patch_dropout == 0.5


# --------------------------------------------------------------------------- memory options
def test_recompute_gives_the_same_loss_and_gradients():
    """PaddleNLP's `--recompute` switches on every layer with `enable_recompute` (both towers): same numbers."""
    import sys as _sys

    _sys.path.insert(0, os.path.join(ROOT, "tests", "distributed"))
    from clip_fixture import global_batch

    from paddlemix_eva.layers.losses import clip_contrastive_loss

    images, ids = global_batch()
    results = []
    for recompute in (False, True):
        model = tiny_clip(seed=3)
        model.train()
        model.visual.enable_recompute = model.text.transformer.enable_recompute = recompute
        out = model(paddle.to_tensor(images[:, :, :28, :28]), paddle.to_tensor(ids))
        loss = clip_contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()
        results.append((float(loss), {n: p.grad.numpy() for n, p in model.named_parameters()}))
    (loss_plain, grads_plain), (loss_recomputed, grads_recomputed) = results
    assert loss_recomputed == loss_plain
    for name, grad in grads_plain.items():
        np.testing.assert_allclose(grads_recomputed[name], grad, rtol=1e-5, atol=1e-7, err_msg=name)


def test_paddlenlp_recompute_flag_reaches_both_towers():
    model = tiny_clip()
    flagged = [name for name, layer in model.named_sublayers() if hasattr(layer, "enable_recompute")]
    assert sorted(flagged) == ["text.transformer", "visual"]


# ------------------------------------------------------------------------- shards, resumed
def _write_shards(root, count: int = 3, per_shard: int = 16):
    import io
    import tarfile

    from PIL import Image
    from test_evaclip_training import COLOURS, TEMPLATE

    rng = np.random.default_rng(1)
    names = sorted(COLOURS)
    for s in range(count):
        with tarfile.open(root / f"{s:05d}.tar", "w") as tar:
            for i in range(per_shard):
                name = names[(s * per_shard + i) % 4]
                pixels = np.clip(np.array(COLOURS[name]) + rng.integers(-40, 40, (32, 32, 3)), 0, 255)
                buffer = io.BytesIO()
                Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG")
                for suffix, data in (("jpg", buffer.getvalue()), ("txt", TEMPLATE.format(name).encode())):
                    info = tarfile.TarInfo(f"{s:05d}{i:04d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root) + "/{00000..%05d}.tar" % (count - 1)


def _train_on_shards(tmp_path, spec, model_dir, out, extra=()):
    cmd = [sys.executable, os.path.join(ROOT, "examples", "evaclip", "run_pretrain_dist.py"), "--model", model_dir,
           "--train_data", spec, "--output_dir", str(out), "--max_steps", "4", "--save_steps", "2",
           "--per_device_train_batch_size", "6", "--logging_steps", "1", "--seed", "0", "--warmup_steps", "1",
           "--dataloader_num_workers", "2", "--disable_tqdm", "True", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    with open(out / "trainer_state.json") as f:
        return {e["step"]: e["loss"] for e in json.load(f)["log_history"] if "loss" in e}, result.stderr


@pytest.mark.slow
def test_training_on_shards_resumes_where_it_stopped(tmp_path):
    """4 steps on tar shards with 2 DataLoader workers, against 2 steps then a resume from checkpoint-2: the
    resumed steps see the same batches (the same losses) without the stream being decoded again."""
    import shutil

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    spec = _write_shards(tmp_path)
    tiny_clip().save_pretrained(str(tmp_path / "model"))
    whole, _ = _train_on_shards(tmp_path, spec, str(tmp_path / "model"), tmp_path / "whole")
    assert sorted(whole) == [1, 2, 3, 4]
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed, log = _train_on_shards(tmp_path, spec, str(tmp_path / "model"), resumed_dir,
                                    ["--resume_from_checkpoint", str(resumed_dir / "checkpoint-2")])
    assert "tar shards resume after 2 batches per rank" in log
    for step in (3, 4):
        assert resumed[step] == pytest.approx(whole[step], rel=1e-5, abs=1e-6), step


def test_shards_need_max_steps(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    spec = _write_shards(tmp_path, count=1, per_shard=2)
    tiny_clip().save_pretrained(str(tmp_path / "model"))
    cmd = [sys.executable, os.path.join(ROOT, "examples", "evaclip", "run_pretrain_dist.py"), "--model",
           str(tmp_path / "model"), "--train_data", spec, "--output_dir", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode != 0 and "--max_steps" in result.stderr


def test_zero_shot_classifier_fits_a_short_text_context():
    """A text tower trained at a shorter context (a small CLIP's 16 tokens) takes prompts tokenised to it."""
    from paddlemix_eva.tasks.zeroshot import build_classifier

    paddle.seed(0)
    model = EVACLIP(EVACLIPConfig(embed_dim=32, vision_cfg=VISION,
                                  text_cfg=dict(width=64, heads=2, layers=1, context_length=16)))
    classifier = build_classifier(model, ["cat", "dog"], ["a photo of a {}.", "a {}."])
    assert classifier.shape == (32, 2)
    np.testing.assert_allclose(np.linalg.norm(classifier, axis=0), 1.0, rtol=1e-5)
