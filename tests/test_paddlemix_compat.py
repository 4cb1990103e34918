"""PaddleMIX's own artefacts, written from what PaddleMIX writes (not from our models): config.json files in its
shape, state dicts with its keys (key lists of shared/design/parity_keymaps.md, section 2), its documented
commands. Each loads or runs unchanged."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddlemix_eva.models import (
    EVACLIP,
    EVA02VisionTransformer,
    EVA02VisionTransformerConfig,
    EVA02VisionTransformerForMIM,
    EVACLIPConfig,
)
from paddlemix_eva.models.eva02.pretrain import EVA02ForPretrain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------------- PaddleMIX configs
# The tower dicts of PaddleMIX's EVA-CLIP configs (its tests/models/test_evaclip.py and hosted configs): embed_dim
# inside each tower, PaddleMIX-only fields (eva_model_name, xattn, fusedLN, quick_gelu) present.
B16_VISION = {"embed_dim": 512, "image_size": 224, "layers": 12, "width": 768, "head_width": 64, "patch_size": 16,
              "mlp_ratio": 2.6667, "eva_model_name": "eva-clip-b-16-X", "drop_path_rate": 0.0, "xattn": True,
              "fusedLN": True, "rope": True, "pt_hw_seq_len": 16, "intp_freq": True, "naiveswiglu": True,
              "subln": True, "quick_gelu": False, "qkv_bias": True, "use_mean_pooling": False}
B16_TEXT = {"embed_dim": 512, "context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12,
            "xattn": True, "fusedLN": True}
L14_VISION = {**B16_VISION, "embed_dim": 768, "layers": 24, "width": 1024, "patch_size": 14,
              "eva_model_name": "eva-clip-l-14"}
L14_TEXT = {**B16_TEXT, "embed_dim": 768, "width": 768, "heads": 12}
CLIP_TOWERS = {"B-16": (B16_VISION, B16_TEXT), "L-14": (L14_VISION, L14_TEXT)}


def paddlemix_clip_config(vision: dict, text: dict) -> dict:
    """What PaddleMIX's `EVACLIPConfig.to_dict` writes: its attributes `vision_config` / `text_config` (the tower
    dicts) and again `vision_cfg` / `text_cfg`, no top-level embed_dim (none was passed)."""
    return {"architectures": ["EVACLIP"], "model_type": "evaclip", "paddlenlp_version": "2.6.1", "return_dict": True,
            "vision_config": dict(vision), "text_config": dict(text), "vision_cfg": dict(vision),
            "text_cfg": dict(text)}


def write_config(directory, config: dict) -> str:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    return str(directory)


# ------------------------------------------------------------------------------- PaddleMIX state dicts
def eva_vision_keys(width: int, layers: int, hidden: int, patch: int, grid: int, out_dim: int, eva02: bool,
                    prefix: str = "") -> dict:
    """PaddleMIX `EVAVisionTransformer` / EVA-02 keys and Paddle shapes ([in, out] Linears). `eva02`: SwiGLU
    (w1/w2/ffn_ln/w3) with inner_attn_ln; else EVA-01's GELU fc1/fc2."""
    keys = {"cls_token": [1, 1, width], "pos_embed": [1, grid * grid + 1, width],
            "patch_embed.proj.weight": [width, 3, patch, patch], "patch_embed.proj.bias": [width]}
    for i in range(layers):
        b = f"blocks.{i}."
        keys.update({b + "norm1.weight": [width], b + "norm1.bias": [width], b + "norm2.weight": [width],
                     b + "norm2.bias": [width], b + "attn.q_proj.weight": [width, width],
                     b + "attn.q_proj.bias": [width],
                     b + "attn.k_proj.weight": [width, width], b + "attn.v_proj.weight": [width, width],
                     b + "attn.v_proj.bias": [width], b + "attn.proj.weight": [width, width],
                     b + "attn.proj.bias": [width]})
        if eva02:
            keys.update({b + "attn.inner_attn_ln.weight": [width], b + "attn.inner_attn_ln.bias": [width],
                         b + "mlp.w1.weight": [width, hidden], b + "mlp.w1.bias": [hidden],
                         b + "mlp.w2.weight": [width, hidden], b + "mlp.w2.bias": [hidden],
                         b + "mlp.ffn_ln.weight": [hidden], b + "mlp.ffn_ln.bias": [hidden],
                         b + "mlp.w3.weight": [hidden, width], b + "mlp.w3.bias": [width]})
        else:
            keys.update({b + "mlp.fc1.weight": [width, hidden], b + "mlp.fc1.bias": [hidden],
                         b + "mlp.fc2.weight": [hidden, width], b + "mlp.fc2.bias": [width]})
    keys.update({"norm.weight": [width], "norm.bias": [width], "head.weight": [width, out_dim], "head.bias": [out_dim]})
    return {prefix + k: v for k, v in keys.items()}


def clip_text_keys(width: int, layers: int, vocab: int, context: int, embed: int, prefix: str = "text.") -> dict:
    keys = {"token_embedding.weight": [vocab, width], "positional_embedding": [context, width],
            "ln_final.weight": [width], "ln_final.bias": [width], "text_projection": [width, embed]}
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        for ln in ("ln_1", "ln_2"):
            keys.update({b + ln + ".weight": [width], b + ln + ".bias": [width]})
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            keys.update({b + f"attn.{proj}.weight": [width, width], b + f"attn.{proj}.bias": [width]})
        keys.update({b + "mlp.c_fc.weight": [width, 4 * width], b + "mlp.c_fc.bias": [4 * width],
                     b + "mlp.c_proj.weight": [4 * width, width], b + "mlp.c_proj.bias": [width]})
    return {prefix + k: v for k, v in keys.items()}


def mim_student_keys(width: int, layers: int, hidden: int, patch: int, grid: int, predict_dim: int,
                     prefix: str = "") -> dict:
    """PaddleMIX `EVA02VisionTransformerForMIM` keys (Ti/S layout: SwiGLU without ffn_ln, no inner LN)."""
    keys = eva_vision_keys(width, layers, hidden, patch, grid, 1, eva02=True)
    keys = {k: v for k, v in keys.items()
            if "inner_attn_ln" not in k and "ffn_ln" not in k and not k.startswith("head.")}
    keys.update({"mask_token": [1, 1, width], "lm_head.weight": [width, predict_dim], "lm_head.bias": [predict_dim]})
    return {prefix + k: v for k, v in keys.items()}


def random_state(shapes: dict, seed: int = 0) -> dict:
    """Values that make every tensor matter: LayerNorm weights near 1, the rest small normals."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("weight") and len(shape) == 1:
            state[key] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            state[key] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    if "logit_scale" in shapes:
        state["logit_scale"] = np.full([1], np.log(1 / 0.07), np.float32)
    return state


def save_paddlemix_weights(directory, state: dict) -> None:
    """As PaddleMIX's `save_pretrained` writes them: `paddle.save` of the tensors in model_state.pdparams."""
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, os.path.join(directory, "model_state.pdparams"))


def assert_loaded(model, state: dict, prefix_map=lambda k: k) -> None:
    loaded = {k: v.numpy() for k, v in model.state_dict().items()}
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[prefix_map(key)], value, err_msg=key)


# ------------------------------------------------------------------------------------------ EVA-CLIP
@pytest.mark.parametrize("name", ["B-16", "L-14"])
def test_evaclip_config_as_paddlemix_writes_it(tmp_path, name):
    vision, text = CLIP_TOWERS[name]
    directory = write_config(tmp_path / name, paddlemix_clip_config(vision, text))
    config = EVACLIPConfig.from_pretrained(directory)
    assert config.embed_dim == vision["embed_dim"]  # from the towers, not a default
    tower = config.vision_config
    assert (tower.width, tower.layers, tower.num_heads, tower.grid_size, tower.embed_dim) == (
        vision["width"], vision["layers"], vision["width"] // 64, 224 // vision["patch_size"], vision["embed_dim"])
    assert config.text_config.embed_dim == vision["embed_dim"] and config.text_config.width == text["width"]


@pytest.mark.parametrize("name", ["B-16", "L-14"])
def test_evaclip_directory_as_paddlemix_writes_it_loads_its_weights(tmp_path, name):
    """Real widths, embed_dims and flags; one block per tower and a small vocabulary keep the file small."""
    vision, text = CLIP_TOWERS[name]
    vision, text = {**vision, "layers": 1}, {**text, "layers": 1, "vocab_size": 1000}
    directory = write_config(tmp_path / name, paddlemix_clip_config(vision, text))
    embed, grid = vision["embed_dim"], 224 // vision["patch_size"]
    shapes = {**eva_vision_keys(vision["width"], 1, int(vision["width"] * 2.6667), vision["patch_size"], grid, embed,
                                eva02=True, prefix="visual."),
              **clip_text_keys(text["width"], 1, 1000, 77, embed), "logit_scale": [1]}
    state = random_state(shapes)
    save_paddlemix_weights(directory, state)
    model = EVACLIP.from_pretrained(directory).eval()
    assert_loaded(model, state)
    with paddle.no_grad():
        out = model(image=paddle.randn([1, 3, 224, 224]), input_ids=paddle.to_tensor([[49406 % 1000, 5, 999, 0]]))
    assert out["image_features"].shape == [1, embed] and out["text_features"].shape == [1, embed]


def test_evaclip_towers_that_disagree_on_embed_dim_are_refused(tmp_path):
    directory = write_config(tmp_path, paddlemix_clip_config(B16_VISION, {**B16_TEXT, "embed_dim": 768}))
    with pytest.raises(ValueError, match="towers disagree on embed_dim"):
        EVACLIPConfig.from_pretrained(directory)
    # a top-level embed_dim decides for both, as in PaddleMIX
    config = EVACLIPConfig(embed_dim=1024, vision_cfg=B16_VISION, text_cfg={**B16_TEXT, "embed_dim": 768})
    assert config.vision_config.embed_dim == config.text_config.embed_dim == 1024


# -------------------------------------------------------------------------------- EVA02ForPretrain
TINY_TEACHER_VISION = {"embed_dim": 32, "image_size": 224, "patch_size": 14, "width": 64, "layers": 2,
                       "head_width": 32, "mlp_ratio": 4.3637, "qkv_bias": True, "rope": False, "subln": False,
                       "naiveswiglu": False, "inner_attn_ln": False, "use_mean_pooling": False, "xattn": True,
                       "fusedLN": True, "output_tokens": True, "token_feats": True}
TINY_TEACHER_TEXT = {"embed_dim": 32, "context_length": 77, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}
# the PaddleMIX MIM field set (EVA02VisionTransformerForMIMConfig): no pt_hw_seq_len / intp_freq / num_classes
TINY_STUDENT = {"image_size": 224, "patch_size": 14, "in_chans": 3, "embed_dim": 64, "layers": 2, "num_heads": 1,
                "mlp_ratio": 2.6667, "qkv_bias": True, "qk_scale": None, "drop_rate": 0.0, "attn_drop_rate": 0.0,
                "drop_path_rate": 0.0, "init_values": None, "use_abs_pos_emb": True, "use_rel_pos_bias": False,
                "use_shared_rel_pos_bias": False, "use_shared_decoupled_rel_pos_bias": False, "init_scale": 0.001,
                "enable_recompute": False, "stop_grad_conv1": True, "postnorm": False, "deepnorm": False,
                "subln": True, "xattn": False, "swiglu": True, "naiveswiglu": False, "rope": True, "init_std": 0.02,
                "xavier_normal_init": True, "attn_head_dim": None, "predict_feature_dim": 32, "fusedLN": False}


def _composite_dir(tmp_path):
    config = {"architectures": ["EVA02ForPretrain"], "model_type": "eva02_for_pretrain",
              "teacher_config": {"vision_cfg": TINY_TEACHER_VISION, "text_cfg": TINY_TEACHER_TEXT},
              "student_config": TINY_STUDENT}
    directory = write_config(tmp_path / "composite", config)
    teacher = {**eva_vision_keys(64, 2, int(64 * 4.3637), 14, 16, 32, eva02=False, prefix="teacher.visual."),
               **clip_text_keys(32, 1, 1000, 77, 32, prefix="teacher.text."), "teacher.logit_scale": [1]}
    student = mim_student_keys(64, 2, int(64 * 2.6667), 14, 16, 32, prefix="student.")
    state = random_state({**teacher, **student}, seed=1)
    save_paddlemix_weights(directory, state)
    return directory, state


def test_composite_checkpoint_loads_teacher_image_tower_and_student(tmp_path, caplog):
    directory, state = _composite_dir(tmp_path)
    with caplog.at_level(logging.INFO, logger="paddlemix_eva"):
        model = EVA02ForPretrain.from_pretrained(directory)
    used = {k: v for k, v in state.items() if not k.startswith(("teacher.text.", "teacher.logit_scale"))}
    assert_loaded(model, used)
    text_keys = sum(k.startswith("teacher.text.") for k in state)
    assert f"dropping {text_keys + 1} keys EVA02ForPretrain does not use" in caplog.text
    assert f"teacher.text.* ({text_keys})" in caplog.text and "teacher.logit_scale" in caplog.text
    mask = paddle.zeros([2, 16, 16], dtype="int64")
    mask[:, 2:6, 3:9] = 1
    samples, image = paddle.randn([2, 3, 224, 224]), paddle.randn([2, 3, 224, 224])
    with paddle.no_grad():
        loss = model(samples, image, mask)["loss"]
        flat = mask.reshape([2, -1]).astype("bool")
        pred = model.student(samples, flat).numpy()  # [48, 32]: the masked patches, predicted
        target = model.teacher.visual.forward_tokens(image)[flat].numpy()  # the loaded teacher's features there
    cosine = (pred * target).sum(-1) / np.linalg.norm(pred, axis=-1) / np.linalg.norm(target, axis=-1)
    assert pred.shape == (48, 32) and float(loss) == pytest.approx(-cosine.mean(), rel=1e-5)


def test_pretrain_script_builds_from_a_composite_directory_with_its_weights(tmp_path):
    from paddlemix_eva.trainer.mim import MIMModelArguments, MIMPretrainArguments, build_pretrain_model

    directory, state = _composite_dir(tmp_path)
    args = MIMPretrainArguments(output_dir=str(tmp_path / "out"), tensorboard=False)
    model = build_pretrain_model(MIMModelArguments(model=directory), args)
    np.testing.assert_array_equal(model.student.lm_head.weight.numpy(), state["student.lm_head.weight"])
    np.testing.assert_array_equal(model.teacher.visual.head.weight.numpy(), state["teacher.visual.head.weight"])


# --------------------------------------------------------------------------------------------- EVA-02
TI_FINETUNE = {"architectures": ["EVA02VisionTransformer"], "model_type": "eva02_vit_finetune", "image_size": 336,
               "patch_size": 14, "in_chans": 3, "num_classes": 1000, "embed_dim": 192, "layers": 2, "num_heads": 3,
               "mlp_ratio": 2.6667, "qkv_bias": True, "qk_scale": None, "drop_rate": 0.0, "attn_drop_rate": 0.0,
               "drop_path_rate": 0.1, "init_values": None, "use_abs_pos_emb": True, "use_rel_pos_bias": False,
               "use_shared_rel_pos_bias": False, "use_mean_pooling": True, "init_scale": 0.001,
               "enable_recompute": False, "stop_grad_conv1": True, "postnorm": False, "deepnorm": False,
               "subln": True, "xattn": False, "swiglu": True, "naiveswiglu": False, "rope": True,
               "pt_hw_seq_len": 16, "intp_freq": True, "fusedLN": False, "return_dict": True}


def test_eva02_classifier_directory_as_paddlemix_writes_it(tmp_path):
    directory = write_config(tmp_path / "ti", TI_FINETUNE)
    shapes = eva_vision_keys(192, 2, 512, 14, 24, 1000, eva02=True)
    shapes = {k: v for k, v in shapes.items() if "inner_attn_ln" not in k and "ffn_ln" not in k
              and not k.startswith("norm.")}
    shapes.update({"fc_norm.weight": [192], "fc_norm.bias": [192]})
    state = random_state(shapes, seed=2)
    save_paddlemix_weights(directory, state)
    model = EVA02VisionTransformer.from_pretrained(directory).eval()
    assert_loaded(model, state)
    assert_rope_table(model, 24, 16)
    with paddle.no_grad():
        assert model(paddle.randn([1, 3, 336, 336])).shape == [1, 1000]


def reference_rope_angles(grid: int, head_dim: int, pt_grid) -> np.ndarray:
    """EVA-02's 2D RoPE angles written out directly: token (r, c) -> [row angles | column angles], each
    frequency 10000^(-j / (head_dim/4)) on two interleaved channels, position i * pt_grid / grid (or i)."""
    quarter = head_dim // 4
    freqs = [10000.0 ** (-j / quarter) for j in range(quarter)]
    positions = [i * pt_grid / grid if pt_grid else float(i) for i in range(grid)]
    table = np.zeros((grid * grid, head_dim))
    for r in range(grid):
        for c in range(grid):
            for j, f in enumerate(freqs):
                table[r * grid + c, 2 * j] = table[r * grid + c, 2 * j + 1] = positions[r] * f
                table[r * grid + c, head_dim // 2 + 2 * j] = table[r * grid + c, head_dim // 2 + 2 * j + 1] = (
                    positions[c] * f)
    return table


def assert_rope_table(model, grid: int, pt_grid) -> None:
    """The model's cos / sin tables (after the cls row, which is the identity) against the direct reference; the
    tolerance is float32 rounding of angles up to ~30 rad."""
    cos, sin = (t.numpy() for t in model.rope.tables())
    np.testing.assert_array_equal(cos[0], 1.0)
    np.testing.assert_array_equal(sin[0], 0.0)
    angles = reference_rope_angles(grid, model.rope.head_dim, pt_grid)
    np.testing.assert_allclose(cos[1:], np.cos(angles), rtol=0, atol=2e-5)
    np.testing.assert_allclose(sin[1:], np.sin(angles), rtol=0, atol=2e-5)


def test_p14to16_mim_rope_uses_integer_positions_on_its_own_grid(tmp_path):
    """Zoo name and PaddleMIX directory (its MIM config has no RoPE interpolation fields) compute the same."""
    from paddlemix_eva import get_model
    from paddlemix_eva.models import EVA02VisionTransformerForMIMConfig

    by_name = get_model("eva02_B_pt_in21k_p14to16", layers=1).eval()
    assert_rope_table(by_name, 14, None)
    fields = {k: v for k, v in by_name.config.to_dict().items() if k not in ("intp_freq", "pt_hw_seq_len",
                                                                            "num_classes", "architectures")}
    directory = write_config(tmp_path / "mim", {**fields, "model_type": "eva02_vit_pretrain"})
    by_name.save_pretrained(str(tmp_path / "weights"))
    os.replace(tmp_path / "weights" / "model_state.pdparams", tmp_path / "mim" / "model_state.pdparams")
    from_dir = EVA02VisionTransformerForMIM.from_pretrained(directory).eval()
    assert isinstance(from_dir.config, EVA02VisionTransformerForMIMConfig)
    images = paddle.randn([1, 3, 224, 224])
    mask = paddle.zeros([1, 196], dtype="bool")
    mask[:, ::3] = True
    with paddle.no_grad():
        np.testing.assert_allclose(from_dir(images, mask).numpy(), by_name(images, mask).numpy(), rtol=0, atol=0)
    # another input size: integer positions on the new grid (upstream's MIM model), not a rescale
    from_dir.set_input_size(448)
    assert_rope_table(from_dir, 28, None)


def test_classifier_from_a_paddlemix_mim_directory_interpolates_rope_like_upstream_fine_tuning(tmp_path):
    """Fine-tuning from a p14to16 MIM checkpoint: positions i * 16 / grid, the 16x16 reference grid of EVA-02."""
    from paddlemix_eva import get_model

    mim = get_model("eva02_B_pt_in21k_p14to16", layers=1)
    mim.save_pretrained(str(tmp_path / "mim"))
    with open(tmp_path / "mim" / "config.json") as f:
        fields = json.load(f)
    for key in ("intp_freq", "pt_hw_seq_len", "num_classes"):
        fields.pop(key, None)
    write_config(tmp_path / "mim", fields)
    config = EVA02VisionTransformerConfig.from_pretrained(str(tmp_path / "mim"))
    assert config.intp_freq and config.pt_hw_seq_len == 16
    classifier = EVA02VisionTransformer.from_pretrained(str(tmp_path / "mim"), num_classes=5)
    assert_rope_table(classifier, 14, 16)


# ---------------------------------------------------------------------------------------- commands
def test_paddlemix_eval_command_runs_verbatim(tmp_path, tiny_eva02_config):
    model_dir = tmp_path / "model"
    tiny_eva02_config.num_classes = 2
    EVA02VisionTransformer(tiny_eva02_config).save_pretrained(str(model_dir))
    _image_folder(tmp_path / "val")
    command = [sys.executable, os.path.join(ROOT, "examples", "eva02", "run_eva02_finetune_eval.py"), "--do_eval",
               "--model", str(model_dir), "--pretrained_model_path", "None", "--eval_data_path", str(tmp_path / "val"),
               "--input_size", "56", "--per_device_eval_batch_size", "4", "--dataloader_num_workers", "0",
               "--output_dir", str(tmp_path / "out"), "--recompute", "True", "--fp16", "False"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to recompute" in result.stderr
    with open(tmp_path / "out" / "eval_report.json") as f:
        report = json.load(f)
    assert report["num_samples"] == 6 and sum(c["count"] for c in report["per_class"].values()) == 6
    # --pretrained_model_path acts: the weights on top are loaded
    other = EVA02VisionTransformer(tiny_eva02_config)
    other.save_pretrained(str(tmp_path / "other"))
    with_weights = subprocess.run(command[:5] + ["--pretrained_model_path",
                                                 str(tmp_path / "other" / "model_state.pdparams")] + command[7:],
                                  capture_output=True, text=True, timeout=300)
    assert with_weights.returncode == 0 and "weights loaded from" in with_weights.stderr
    refused = subprocess.run(command[:-1] + ["True"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "only runs on CUDA" in refused.stderr


def _image_folder(root, classes=("a", "b"), per_class=3, size=60):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        os.makedirs(root / cls)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return str(root)


@pytest.mark.slow
def test_paddlemix_pretrain_and_finetune_commands_run_verbatim(tmp_path, tiny_eva02_config):
    """PaddleMIX's documented commands with their sizes, steps and paths scaled down; every flag is accepted."""
    composite, _ = _composite_dir(tmp_path)
    images = _image_folder(tmp_path / "images", classes=("x",), per_class=8, size=230)
    pretrain = [
        os.path.join(ROOT, "examples", "eva02", "run_eva02_pretrain_dist.py"), "--do_train", "--data_path", images,
        "--model", composite, "--teacher", "paddlemix/EVA/EVA01-CLIP-g-14",
        "--student", "paddlemix/EVA/EVA02/eva02_Ti_pt_in21k_p14", "--input_size", "224", "--drop_path", "0.0",
        "--optim", "adamw", "--learning_rate", "3e-3", "--weight_decay", "0.05", "--adam_beta1", "0.9",
        "--adam_beta2", "0.98", "--adam_epsilon", "1e-6", "--max_grad_norm", "3.0", "--lr_scheduler_type", "cosine",
        "--warmup_lr", "1e-6", "--min_lr", "1e-5", "--num_train_epochs", "1", "--save_epochs", "1",
        "--warmup_epochs", "1", "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0",
        "--output_dir", str(tmp_path / "pt"), "--logging_dir", str(tmp_path / "pt" / "tb_log"), "--logging_steps", "1",
        "--accum_freq", "1", "--dp_degree", "1", "--tensor_parallel_degree", "1", "--sharding_parallel_degree", "1",
        "--pipeline_parallel_degree", "1", "--disable_tqdm", "True", "--tensorboard", "True",
        "--stu_pretrained_model_path", "None", "--tea_pretrained_model_path", "None", "--fp16_opt_level", "O1",
        "--seed", "0", "--recompute", "True", "--bf16", "False"]
    result = subprocess.run([sys.executable, *pretrain], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--teacher paddlemix/EVA/EVA01-CLIP-g-14 is ignored" in result.stderr  # the composite's teacher trains
    assert "MIM pre-training done: 2 steps" in result.stderr

    tiny_eva02_config.num_classes = 2
    EVA02VisionTransformer(tiny_eva02_config).save_pretrained(str(tmp_path / "init"))
    data = _image_folder(tmp_path / "cls")
    finetune = [
        os.path.join(ROOT, "examples", "eva02", "run_eva02_finetune_dist.py"), "--do_train", "--data_path", data,
        "--eval_data_path", data, "--pretrained_model_path", str(tmp_path / "init" / "model_state.pdparams"),
        "--model", str(tmp_path / "init"), "--input_size", "56", "--layer_decay", "0.9", "--drop_path", "0.1",
        "--optim", "adamw", "--learning_rate", "2e-4", "--weight_decay", "0.05", "--adam_beta1", "0.9",
        "--adam_beta2", "0.999", "--adam_epsilon", "1e-8", "--max_grad_norm", "0.0", "--lr_scheduler_type", "cosine",
        "--lr_end", "1e-7", "--warmup_lr", "0.0", "--min_lr", "0.0", "--num_train_epochs", "1", "--save_epochs", "1",
        "--warmup_epochs", "0", "--per_device_train_batch_size", "2", "--dataloader_num_workers", "0",
        "--output_dir", str(tmp_path / "ft"), "--logging_dir", str(tmp_path / "ft" / "tb_log"), "--logging_steps", "1",
        "--accum_freq", "1", "--dp_degree", "1", "--tensor_parallel_degree", "1", "--sharding_parallel_degree", "1",
        "--pipeline_parallel_degree", "1", "--disable_tqdm", "True", "--tensorboard", "True", "--recompute", "True",
        "--fp16_opt_level", "O1", "--seed", "0", "--fp16", "False"]
    result = subprocess.run([sys.executable, *finetune], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fine-tuning done: 3 steps" in result.stderr and os.path.isfile(tmp_path / "ft" / "model_state.pdparams")
