"""MAE: sin-cos table, masking, patchify, the autoencoder against a torch reference built from timm blocks, the
classifier against timm's ViT, conversion, pre-training / fine-tuning / linear probing, data parallel, pictures."""
import logging
import math
import os
import re
import subprocess
import sys
from functools import partial

import numpy as np
import paddle
import pytest
from PIL import Image, ImageDraw

from paddlemix_eva import zoo
from paddlemix_eva.convert import convert_checkpoint
from paddlemix_eva.data.mae import MAEPretrainDataset, collate_mae
from paddlemix_eva.models.mae import MAEConfig, MAEForPretraining, MAEVisionTransformer, MAEVisionTransformerConfig
from paddlemix_eva.models.mae.masking import random_masking
from paddlemix_eva.models.mae.patches import normalize_patches, patchify, unpatchify
from paddlemix_eva.models.mae.pos_embed import sincos_2d_table
from paddlemix_eva.models.mae.zoo_table import mae_config
from paddlemix_eva.tasks import zoo_stats
from paddlemix_eva.trainer.lars import LARS
from paddlemix_eva.trainer.mae import (
    MAEPretrainArguments,
    MAEPretrainModelArguments,
    MAEPretrainTrainer,
    build_pretrain_model,
    resolve_learning_rate,
)
from paddlemix_eva.trainer.optim import decayed_parameter_names

from launch import logged_losses, script_command
from peers import import_timm, make_sensitive, seeded_images, torch_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN_SCRIPT = os.path.join(ROOT, "examples", "mae", "run_mae_pretrain_dist.py")
#: the "test" size: 32 px, 4x4 patches of 8, width 128 (2 heads of 64), decoder 64 wide, 1 block, 2 heads
TEST = mae_config("test")
TIMM_TEST = dict(img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2)
CAPTURE = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def tiny_autoencoder(**overrides) -> MAEForPretraining:
    paddle.seed(0)
    return MAEForPretraining(MAEConfig(**{**TEST, **overrides}))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """32 images of coloured rectangles (learnable structure for the reconstruction loss)."""
    root = tmp_path_factory.mktemp("mae_images")
    rng = np.random.default_rng(0)
    for i in range(32):
        img = Image.new("RGB", (48, 40), tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x, y = rng.integers(0, 30, 2)
            draw.rectangle([x, y, x + 12, y + 10], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img.save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mae_config")
    MAEConfig(**TEST).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mae_pretrained")
    tiny_autoencoder().save_pretrained(str(path))
    return path


# ---------------------------------------------------------------------------------------- sin-cos table
def reference_sincos_table(dim: int, grid: int) -> np.ndarray:
    """MAE's fixed table written out from its definition, one value at a time in float64: a zero row for cls, then
    for the patch at (row r, column c) [sin(c w_k), cos(c w_k)] over k followed by [sin(r w_k), cos(r w_k)],
    w_k = 10000^(-k / (dim/4)), k < dim/4 (the column half first, as MAE's meshgrid(w, h) puts it)."""
    quarter = dim // 4
    table = np.zeros((1 + grid * grid, dim))
    for r in range(grid):
        for c in range(grid):
            row = 1 + r * grid + c
            for k in range(quarter):
                w = 10000.0 ** (-k / quarter)
                table[row, k], table[row, quarter + k] = math.sin(c * w), math.cos(c * w)
                table[row, 2 * quarter + k], table[row, 3 * quarter + k] = math.sin(r * w), math.cos(r * w)
    return table


def test_sincos_table_equals_the_reference_values():
    small = sincos_2d_table(8, 2)
    s1, c1, s01, c01 = 0.841471, 0.540302, 0.0099998333, 0.99995
    expected = [
        [0] * 8,
        [0, 0, 1, 1, 0, 0, 1, 1],
        [s1, s01, c1, c01, 0, 0, 1, 1],  # (row 0, col 1): the column is the first half
        [0, 0, 1, 1, s1, s01, c1, c01],  # (row 1, col 0)
        [s1, s01, c1, c01, s1, s01, c1, c01],
    ]
    np.testing.assert_allclose(small, expected, atol=1e-6)
    base = sincos_2d_table(768, 14)
    assert base.shape == (197, 768) and base.dtype == np.float32
    np.testing.assert_allclose(base[5, :4], [-0.756802, -0.621812, -0.472811, -0.316715], atol=1e-6)
    np.testing.assert_array_equal(base[5, 384:388], 0.0)
    np.testing.assert_array_equal(base[5, 576:580], 1.0)
    for dim in (768, 512):  # the released encoder and decoder widths, element by element
        np.testing.assert_allclose(sincos_2d_table(dim, 14), reference_sincos_table(dim, 14), rtol=0, atol=2e-6)
    model = tiny_autoencoder()
    np.testing.assert_array_equal(model.pos_embed.numpy()[0], sincos_2d_table(128, 4))
    np.testing.assert_array_equal(model.decoder_pos_embed.numpy()[0], sincos_2d_table(64, 4))


# --------------------------------------------------------------------------------------------- masking
def test_masking_keeps_floor_tokens_and_ids_restore_inverts_the_shuffle():
    rng = np.random.default_rng(0)
    for length, ratio, kept in ((196, 0.75, 49), (256, 0.75, 64), (10, 0.75, 2), (16, 0.6, 6)):
        x = rng.standard_normal((3, length, 4)).astype(np.float32)
        noise = rng.random((3, length)).astype(np.float32)
        out = random_masking(paddle.to_tensor(x), ratio, paddle.to_tensor(noise))
        order = np.argsort(noise, axis=1)
        assert out.visible.shape == [3, kept, 4]
        np.testing.assert_array_equal(out.visible.numpy(), np.take_along_axis(x, order[:, :kept, None], 1))
        mask = out.mask.numpy()
        np.testing.assert_array_equal(mask.sum(1), length - kept)
        np.testing.assert_array_equal(np.take_along_axis(mask, order[:, :kept], 1), 0.0)
        shuffled = np.take_along_axis(x, order[..., None], 1)
        restored = np.take_along_axis(shuffled, out.ids_restore.numpy()[..., None], 1)
        np.testing.assert_array_equal(restored, x)
    drawn = random_masking(paddle.zeros([4, 16, 2]), 0.75).mask.numpy()
    assert len({tuple(row) for row in drawn}) > 1  # each sample has its own permutation


# --------------------------------------------------------------------------------------------- patches
def test_patchify_layout_and_exact_round_trip():
    x = seeded_images(2, 32)
    patches = patchify(paddle.to_tensor(x), 8).numpy()
    assert patches.shape == (2, 16, 192)
    row, col, i, j, channel = 2, 3, 5, 1, 2  # token row*4+col, inside the patch (pixel row, pixel col, channel)
    assert patches[1, row * 4 + col, (i * 8 + j) * 3 + channel] == x[1, channel, row * 8 + i, col * 8 + j]
    np.testing.assert_array_equal(unpatchify(paddle.to_tensor(patches), 8).numpy(), x)
    target = normalize_patches(paddle.to_tensor(patches)).numpy()
    np.testing.assert_allclose(target.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(target.var(-1, ddof=1), 1.0, atol=1e-4)


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.25, 1.5])
def test_mask_ratio_outside_the_open_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be in the open interval \(0, 1\)"):
        MAEConfig(**TEST, mask_ratio=ratio)
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        random_masking(paddle.zeros([1, 16, 2]), ratio)
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        tiny_autoencoder()(paddle.zeros([1, 3, 32, 32]), mask_ratio=ratio)


def test_bad_overrides_of_a_saved_config_are_refused(config_dir, pretrained_dir):
    with pytest.raises(ValueError, match=r"mask_ratio must be in the open interval \(0, 1\), got 1.5"):
        build_pretrain_model(MAEPretrainModelArguments(model=str(config_dir), mask_ratio=1.5))
    with pytest.raises(ValueError, match="image_size 36 is not a multiple of patch_size 8"):
        MAEVisionTransformer.from_pretrained(str(pretrained_dir), image_size=36)


def test_bad_sizes_give_clear_errors():
    with pytest.raises(ValueError, match="image_size 30 is not a multiple of patch_size 8"):
        MAEConfig(**{**TEST, "image_size": 30})
    with pytest.raises(ValueError, match="image_size 100 is not a multiple of patch_size 16"):
        MAEVisionTransformerConfig(image_size=100)
    with pytest.raises(ValueError, match="keeps no token of 16 patches"):
        MAEConfig(**TEST, mask_ratio=0.95)
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        patchify(paddle.zeros([1, 3, 30, 30]), 8)
    with pytest.raises(ValueError, match=r"built for 32x32 images \(config.image_size\), got 40x40"):
        tiny_autoencoder()(paddle.zeros([1, 3, 40, 40]))
    with pytest.raises(ValueError, match=r"masking noise must have shape \[batch, patches\] = \[2, 16\]"):
        tiny_autoencoder()(paddle.zeros([2, 3, 32, 32]), noise=paddle.zeros([2, 15]))


# ------------------------------------------------------------------------------------ sizes and init
@pytest.mark.parametrize("size, pretrain, finetuned", [("base", 111_655_680, 86_567_656),
                                                       ("large", 329_239_296, 304_326_632),
                                                       ("huge", 656_613_964, 632_045_800)])
def test_parameter_counts_equal_the_published_architectures(size, pretrain, finetuned):
    patch = 14 if size == "huge" else 16
    assert zoo_stats.count_parameters(f"mae_vit_{size}_patch{patch}") == pretrain  # frozen position tables not counted
    assert zoo_stats.count_parameters(f"mae_finetuned_vit_{size}") == finetuned


def test_upstream_initialisation():
    model = tiny_autoencoder()
    dim, decoder = 128, 64
    qkv_bound = np.sqrt(6.0 / (dim + 3 * dim))  # one fused 3D-wide qkv upstream
    q = model.blocks[0].attn.q_proj.weight.numpy()
    assert qkv_bound * 0.95 < np.abs(q).max() <= qkv_bound
    fc1 = model.decoder_blocks[0].mlp.fc1.weight.numpy()
    assert np.abs(fc1).max() <= np.sqrt(6.0 / (decoder + 4 * decoder)) and np.abs(fc1).max() > 0.9 * np.sqrt(
        6.0 / (decoder + 4 * decoder))
    conv_bound = np.sqrt(6.0 / (3 * 8 * 8 + dim))  # Xavier on the [D, 3p^2] view
    conv = model.patch_embed.proj.weight.numpy()
    assert 0.95 * conv_bound < np.abs(conv).max() <= conv_bound
    assert not np.any(model.blocks[0].attn.k_proj.bias.numpy()) and np.all(model.norm.weight.numpy() == 1)
    assert 0.01 < model.mask_token.numpy().std() < 0.04
    assert "pos_embed" in model.state_dict() and "decoder_pos_embed" in model.state_dict()
    assert not any(name.endswith("pos_embed") for name, _ in model.named_parameters())


# ------------------------------------------------------------------------------ forward and loss
def test_loss_is_mse_over_masked_patches_of_the_norm_pix_target():
    model = tiny_autoencoder()
    images = paddle.to_tensor(seeded_images(2, 32))
    out = model(images)
    assert out["pred"].shape == [2, 16, 192] and out["loss"].dtype == paddle.float32
    target = normalize_patches(patchify(images, 8)).numpy()
    pred, mask = out["pred"].numpy(), out["mask"].numpy()
    expected = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    garbage = np.where(mask[..., None] == 1, target, 100.0).astype(np.float32)  # exact on masked, wrong elsewhere
    zero = model.reconstruction_loss(images, paddle.to_tensor(garbage), out["mask"])
    assert float(zero) == pytest.approx(0.0, abs=1e-10)
    raw = tiny_autoencoder(norm_pix_loss=False).reconstruction_target(images).numpy()
    np.testing.assert_array_equal(raw, patchify(images, 8).numpy())


def _timm_block(dim, heads):
    import torch
    from timm.models.vision_transformer import Block

    return Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))


def _reference_autoencoder():
    """An MAE in the official layout, made of a timm ViT encoder and timm blocks for the decoder."""
    timm = import_timm()
    import torch

    torch.manual_seed(0)
    encoder = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, **TIMM_TEST).eval()
    decoder = torch.nn.Module()
    decoder.decoder_embed = torch.nn.Linear(128, 64)
    decoder.mask_token = torch.nn.Parameter(0.02 * torch.randn(1, 1, 64))
    decoder.decoder_pos_embed = torch.nn.Parameter(torch.tensor(sincos_2d_table(64, 4)[None]), requires_grad=False)
    decoder.decoder_blocks = torch.nn.Sequential(_timm_block(64, 2))
    decoder.decoder_norm = torch.nn.LayerNorm(64, eps=1e-6)
    decoder.decoder_pred = torch.nn.Linear(64, 192)
    decoder.eval()
    for module in (encoder, decoder):
        make_sensitive(module)
    return encoder, decoder


def _reference_forward(encoder, decoder, images, noise, ratio=0.75, patch=8):
    """MAE's pre-training forward and loss, written from the specification in torch on timm's modules."""
    import torch

    x = encoder.patch_embed(images) + encoder.pos_embed[:, 1:]
    n, length, dim = x.shape
    keep = int(length * (1 - ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, dim))
    mask = torch.ones(n, length)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    x = torch.cat([(encoder.cls_token + encoder.pos_embed[:, :1]).expand(n, -1, -1), x], dim=1)
    x = encoder.norm(encoder.blocks(x))
    y = decoder.decoder_embed(x)
    filled = torch.cat([y[:, 1:], decoder.mask_token.expand(n, length - keep, -1)], dim=1)
    filled = torch.gather(filled, 1, ids_restore[..., None].expand(-1, -1, y.shape[-1]))
    y = torch.cat([y[:, :1], filled], dim=1) + decoder.decoder_pos_embed
    pred = decoder.decoder_pred(decoder.decoder_norm(decoder.decoder_blocks(y)))[:, 1:]
    grid = images.shape[-1] // patch
    target = images.reshape(n, 3, grid, patch, grid, patch).permute(0, 2, 4, 3, 5, 1).reshape(n, grid * grid, -1)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    return loss, pred, mask


def test_pretraining_forward_matches_a_torch_reference_after_official_conversion(tmp_path, caplog):
    import torch

    encoder, decoder = _reference_autoencoder()
    state = {**torch_state_dict(encoder), **torch_state_dict(decoder)}
    torch.save({"model": {k: torch.tensor(v) for k, v in state.items()}}, tmp_path / "mae_official.pth")
    with caplog.at_level(logging.INFO):
        out_dir = convert_checkpoint(str(tmp_path / "mae_official.pth"), "official", out=str(tmp_path / "converted"))
    model = MAEForPretraining.from_pretrained(out_dir).eval()
    config = model.config
    assert (config.embed_dim, config.num_heads, config.decoder_embed_dim, config.decoder_num_heads) == (128, 2, 64, 2)
    images = seeded_images(2, 32)
    noise = np.random.default_rng(3).random((2, 16)).astype(np.float32)
    with torch.no_grad():
        loss, pred, mask = _reference_forward(encoder, decoder, torch.tensor(images), torch.tensor(noise))
    with paddle.no_grad():
        ours = model(paddle.to_tensor(images), noise=paddle.to_tensor(noise))
    np.testing.assert_array_equal(ours["mask"].numpy(), mask.numpy())
    np.testing.assert_allclose(ours["pred"].numpy(), pred.numpy(), atol=1e-4)
    assert float(ours["loss"]) == pytest.approx(float(loss), abs=1e-5)
    assert float(loss) > 0.5  # a sensitive, not a trivially small, comparison


# ------------------------------------------------------------------------------ classifier vs timm
CLASSIFIER_CASES = {
    # name: (timm kwargs, our pooling)
    "finetune-avgpool": (dict(num_classes=10, global_pool="avg"), True),
    "cls-token": (dict(num_classes=10, global_pool="token"), False),
    "mae-encoder-layout": (dict(num_classes=0, global_pool="token"), False),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
def test_classifier_matches_timm_vit(case, tmp_path):
    timm = import_timm()
    import torch

    kwargs, global_pool = CLASSIFIER_CASES[case]
    torch.manual_seed(0)
    reference = timm.create_model("vit_base_patch16_224", pretrained=False, **TIMM_TEST, **kwargs).eval()
    make_sensitive(reference)
    images = seeded_images(2, 32)
    with torch.no_grad():
        tokens = reference.forward_features(torch.tensor(images))
        logits = reference.forward_head(tokens).numpy()
    model = MAEVisionTransformer.from_pretrained(convert_checkpoint(torch_state_dict(reference), "timm",
                                                                    out=str(tmp_path / "converted"))).eval()
    assert model.config.global_pool == global_pool and model.config.num_classes == kwargs["num_classes"]
    with paddle.no_grad():
        ours = model(paddle.to_tensor(images)).numpy()
        features = model.forward_features(paddle.to_tensor(images)).numpy()
    assert ours.shape == logits.shape
    np.testing.assert_allclose(ours, logits, atol=1e-4)
    if global_pool:  # timm's forward_features ends with an Identity norm here, ours before the pooling norm
        np.testing.assert_allclose(features, tokens.numpy(), atol=1e-4)


def test_official_finetuned_and_linear_probe_layouts_convert(tmp_path):
    """Finetuned (fc_norm + head) and linear-probe (head = Sequential(BatchNorm1d, Linear)) checkpoints."""
    timm = import_timm()
    import torch

    torch.manual_seed(0)
    finetuned = timm.create_model("vit_base_patch16_224", pretrained=False, **TIMM_TEST, num_classes=5,
                                  global_pool="avg").eval()
    model_class, config, _ = _convert_only(torch_state_dict(finetuned))
    assert model_class is MAEVisionTransformer and config.global_pool and not config.linear_probe
    probe = timm.create_model("vit_base_patch16_224", pretrained=False, **TIMM_TEST, num_classes=5).eval()
    probe.head = torch.nn.Sequential(torch.nn.BatchNorm1d(128, affine=False, eps=1e-6), probe.head)
    probe.head[0].running_mean.normal_()
    probe.head[0].running_var.uniform_(0.5, 2.0)
    probe.eval()
    make_sensitive(probe)
    images = seeded_images(2, 32)
    with torch.no_grad():
        expected = probe(torch.tensor(images)).numpy()
    out = convert_checkpoint(torch_state_dict(probe), "official", out=str(tmp_path / "probe"))
    model = MAEVisionTransformer.from_pretrained(out).eval()
    assert model.config.linear_probe and not model.config.global_pool
    with paddle.no_grad():
        np.testing.assert_allclose(model(paddle.to_tensor(images)).numpy(), expected, atol=1e-4)


def _convert_only(state):
    from paddlemix_eva.models.mae import convert as mae_converter

    assert mae_converter.detect(state)
    return mae_converter.convert(state, "official", "test")


def test_eva_checkpoints_are_not_taken_for_mae(tiny_eva02_config):
    from paddlemix_eva.models import EVA02VisionTransformer
    from paddlemix_eva.models.mae import convert as mae_converter

    eva_state = {k: v.numpy() for k, v in EVA02VisionTransformer(tiny_eva02_config).state_dict().items()}
    assert not mae_converter.detect(eva_state)
    assert mae_converter.detect({k: v.numpy() for k, v in tiny_autoencoder().state_dict().items()})


# ------------------------------------------------------------------------------------------ zoo
def test_zoo_lists_mae_and_says_how_to_get_official_weights():
    names = zoo.list_models("mae_*")
    assert {"mae_vit_base_patch16", "mae_pretrain_vit_base", "mae_finetuned_vit_huge",
            "mae_visualize_vit_large"} <= set(names)
    assert zoo.get_entry("mae_finetuned_vit_base").top1 == 83.6
    with pytest.raises(FileNotFoundError, match="convert mae_finetuned_vit_base.pth --format official"):
        MAEVisionTransformer.from_pretrained("mae_finetuned_vit_base")
    with pytest.raises(FileNotFoundError, match="without released weights"):
        MAEForPretraining.from_pretrained("mae_vit_base_patch16")
    assert zoo_stats.count_image_macs("mae_vit_base_patch16") < zoo_stats.count_image_macs("mae_pretrain_vit_base")


# ---------------------------------------------------------------------------------------- training
def test_dataset_masking_noise_is_a_function_of_seed_epoch_and_index(image_dir):
    data = MAEPretrainDataset(str(image_dir), input_size=32, num_patches=16, seed=1)
    image, noise = data[3]
    assert image.shape == (3, 32, 32) and noise.shape == (16,) and noise.dtype == np.float32
    np.testing.assert_array_equal(data[3][1], noise)
    assert not np.array_equal(data[4][1], noise)
    data.set_epoch(1)
    assert not np.array_equal(data[3][1], noise)
    batch = collate_mae([data[0], data[1]])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["noise"].shape == (2, 16)


def test_a_few_pretraining_steps_lower_the_loss(image_dir, tmp_path):
    model = tiny_autoencoder()
    pos_before = model.pos_embed.numpy().copy()
    args = MAEPretrainArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=40, blr=0.05,
                                warmup_steps=4, logging_steps=1, report_to=[], disable_tqdm=True, save_strategy="no",
                                dataloader_num_workers=0, seed=0)
    assert resolve_learning_rate(args) == pytest.approx(0.05 * 8 / 256)
    data = MAEPretrainDataset(str(image_dir), input_size=32, num_patches=16)
    trainer = MAEPretrainTrainer(model=model, args=args, train_dataset=data, data_collator=collate_mae)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 40 and np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.2, losses
    names = {p.name: n for n, p in model.named_parameters()}
    decayed = {names[p] for p in decayed_parameter_names(model)}
    assert {"cls_token", "mask_token", "decoder_embed.weight", "patch_embed.proj.weight"} <= decayed  # upstream
    assert not any(n.endswith(".bias") or "norm" in n for n in decayed)
    np.testing.assert_array_equal(model.pos_embed.numpy(), pos_before)  # frozen


def _run_pretrain_script(out_dir, config_dir, image_dir, nproc, per_device, *extra):
    args = ["--do_train", "--data_path", str(image_dir), "--model", str(config_dir), "--output_dir", str(out_dir),
            "--per_device_train_batch_size", str(per_device), "--blr", "0.03", "--max_steps", "4", "--warmup_steps",
            "1", "--logging_steps", "1", "--save_epochs", "0", "--save_steps", "4", "--seed", "0",
            "--dataloader_num_workers", "0", "--disable_tqdm", "true", *extra]
    return subprocess.Popen(script_command(PRETRAIN_SCRIPT, args, nproc, f"{out_dir}_log"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(out_dir.parent))


@pytest.mark.slow
def test_two_processes_equal_one_on_the_same_global_batch(config_dir, image_dir, tmp_path):
    runs = {
        "single": _run_pretrain_script(tmp_path / "single", config_dir, image_dir, 1, 8),
        "dp2": _run_pretrain_script(tmp_path / "dp2", config_dir, image_dir, 2, 4, "--dp_degree", "2"),
        "sharding2": _run_pretrain_script(tmp_path / "sharding2", config_dir, image_dir, 2, 4, "--sharding", "stage1",
                                          "--sharding_parallel_degree", "2"),
    }
    histories = {}
    for name, proc in runs.items():
        output, _ = proc.communicate(timeout=600)
        log = tmp_path / f"{name}_log" / "workerlog.0"
        assert proc.returncode == 0, (output + (log.read_text() if log.exists() else ""))[-4000:]
        histories[name] = logged_losses(tmp_path / name / "checkpoint-4")
    one = histories["single"]
    for layout in ("dp2", "sharding2"):
        two = histories[layout]
        assert sorted(one) == sorted(two) == [1, 2, 3, 4]
        for step in one:
            assert two[step]["loss"] == pytest.approx(one[step]["loss"], abs=1e-5), (layout, step, one, two)
            assert two[step]["learning_rate"] == pytest.approx(one[step]["learning_rate"], rel=1e-6)
    assert one[1]["learning_rate"] == pytest.approx(0.03 * 8 / 256)  # blr x global batch / 256 on both
    reloaded = MAEForPretraining.from_pretrained(str(tmp_path / "dp2"))
    assert reloaded.config.decoder_embed_dim == 64


# ------------------------------------------------------------------------------- fine-tuning / probe
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from digits_demo import write_digits_imagefolder

    root = tmp_path_factory.mktemp("digits")
    write_digits_imagefolder(str(root), size=32)
    return root


def test_finetuning_starts_from_pretraining_weights_with_the_recipe(digits, pretrained_dir, tmp_path, caplog):
    from paddlemix_eva.trainer.finetune import layer_decay_scales, run_evaluation
    from paddlemix_eva.trainer.mae import (
        MAEFinetuneArguments,
        MAEFinetuneDataArguments,
        MAEFinetuneModelArguments,
        run_mae_finetuning,
    )

    model_args = MAEFinetuneModelArguments(model=str(pretrained_dir))
    data_args = MAEFinetuneDataArguments(data_path=str(digits / "train"), eval_data_path=str(digits / "val"))
    args = MAEFinetuneArguments(output_dir=str(tmp_path / "ft"), per_device_train_batch_size=32, max_steps=6,
                                warmup_steps=2, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
                                save_steps=6, save_epochs=0, per_device_eval_batch_size=128)
    assert (data_args.mixup, data_args.cutmix, data_args.reprob, model_args.layer_decay) == (0.8, 1.0, 0.25, 0.65)
    with caplog.at_level(logging.INFO):
        trainer, metrics = run_mae_finetuning(model_args, data_args, args)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert re.search(r"dropping \d+ keys", text) and "decoder_embed.weight" in text and "mask_token" in text
    assert args.learning_rate == pytest.approx(5e-4 * 32 / 256)
    model = trainer.model
    assert model.config.global_pool and model.config.drop_path_rate == 0.1 and model.norm is None
    pretrained = MAEForPretraining.from_pretrained(str(pretrained_dir))
    scales = layer_decay_scales(model, 0.65)
    assert max(model.layer_ids().values()) == 3  # 2 blocks + the head
    for name, param in model.named_parameters():
        assert param.optimize_attr["learning_rate"] == pytest.approx(scales[name]), name
    assert model.blocks[0].attn.q_proj.weight.optimize_attr["learning_rate"] == pytest.approx(0.65 ** 2)
    assert not np.allclose(model.blocks[1].mlp.fc1.weight.numpy(), pretrained.blocks[1].mlp.fc1.weight.numpy())
    # the logged top-1 is the fraction of validation images whose largest logit is their label
    from paddlemix_eva.data.datasets import ImageFolder
    from paddlemix_eva.data.transforms import EvalTransform

    val = ImageFolder(str(digits / "val"), EvalTransform(model.config.image_size, 0.875, data_args.image_mean,
                                                        data_args.image_std))
    images = np.stack([val[i][0] for i in range(len(val))])
    labels = np.asarray([val[i][1] for i in range(len(val))])
    model.eval()
    with paddle.no_grad():
        predicted = model(paddle.to_tensor(images)).numpy().argmax(-1)
    assert metrics["eval_top1"] == pytest.approx(100.0 * np.mean(predicted == labels))
    again = run_evaluation(str(tmp_path / "ft"), str(digits / "val"), batch_size=128, crop_pct=0.875,
                           mean=data_args.image_mean, std=data_args.image_std, model_class=MAEVisionTransformer)
    assert again["top1"] == pytest.approx(metrics["eval_top1"])


def test_linear_probe_trains_only_the_batchnorm_head_with_lars(digits, pretrained_dir, tmp_path):
    from paddlemix_eva.trainer.mae import (
        MAELinprobeArguments,
        MAELinprobeDataArguments,
        MAELinprobeModelArguments,
        run_mae_linear_probe,
    )

    # LARS moves a tensor by ~lr x 0.001 x its norm per step: a short run needs a large rate (the recipe: 6.4)
    args = MAELinprobeArguments(output_dir=str(tmp_path / "probe"), per_device_train_batch_size=64, max_steps=60,
                                warmup_steps=2, report_to=[], disable_tqdm=True, dataloader_num_workers=0,
                                save_steps=60, save_epochs=0, learning_rate=10.0, logging_steps=10)
    data_args = MAELinprobeDataArguments(data_path=str(digits / "train"), eval_data_path=str(digits / "val"),
                                         scale_min=0.9, hflip=0.0)
    trainer, metrics = run_mae_linear_probe(MAELinprobeModelArguments(model=str(pretrained_dir)), data_args, args)
    model = trainer.model
    assert isinstance(trainer.optimizer, LARS)
    assert sorted(n for n, p in model.named_parameters() if not p.stop_gradient) == ["head.bias", "head.weight"]
    pretrained = MAEForPretraining.from_pretrained(str(pretrained_dir))
    for name, value in pretrained.state_dict().items():
        if name in model.state_dict():
            np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy(), err_msg=name)
    assert np.abs(model.head_norm._mean.numpy()).sum() > 0  # running statistics were collected
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < losses[0], losses
    assert metrics["eval_top1"] > 25.0, metrics  # chance: 10 %; even a random encoder's cls token separates digits
    reloaded = MAEVisionTransformer.from_pretrained(str(tmp_path / "probe"))
    np.testing.assert_array_equal(reloaded.head_norm._variance.numpy(), model.head_norm._variance.numpy())


def test_lars_step_follows_the_update_rule():
    paddle.seed(0)
    layer = paddle.nn.Linear(4, 3)
    optimizer = LARS(0.5, layer.parameters(), momentum=0.9, trust_coefficient=0.001, weight_decay=0.01)
    x = paddle.randn([5, 4])
    velocity = {"w": 0.0, "b": 0.0}
    for _ in range(3):
        weight, bias = layer.weight.numpy().copy(), layer.bias.numpy().copy()
        (layer(x) ** 2).sum().backward()
        grad_w, grad_b = layer.weight.grad.numpy().copy(), layer.bias.grad.numpy().copy()
        optimizer.step()
        optimizer.clear_grad()
        update = grad_w + 0.01 * weight
        velocity["w"] = 0.9 * velocity["w"] + 0.001 * np.linalg.norm(weight) / np.linalg.norm(update) * update
        velocity["b"] = 0.9 * velocity["b"] + grad_b  # vectors: no trust ratio, no decay
        np.testing.assert_allclose(layer.weight.numpy(), weight - 0.5 * velocity["w"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(layer.bias.numpy(), bias - 0.5 * velocity["b"], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------ picture
def test_mae_visualize_writes_original_masked_and_reconstruction(pretrained_dir, image_dir, tmp_path):
    from paddlemix_eva.data.transforms import EvalTransform
    from paddlemix_eva.tasks.mae_visualize import MASK_GREY, load_autoencoder, reconstruct

    image, out = str(image_dir / "5.png"), str(tmp_path / "figure.png")
    cli = [sys.executable, "-m", "paddlemix_eva.cli", "mae-visualize", image, "--out"]
    runs = [subprocess.Popen(cli + [out, "--model", str(pretrained_dir), "--seed", "3"], **CAPTURE),
            subprocess.Popen(cli + [str(tmp_path / "no.png"), "--model", "mae_finetuned_vit_base"], **CAPTURE)]
    (_, error), (_, refusal) = (run.communicate(timeout=300) for run in runs)
    assert runs[0].returncode == 0, error[-3000:]
    assert runs[1].returncode != 0 and "without an MAE decoder" in refusal and "Traceback" not in refusal
    figure = np.asarray(Image.open(out).convert("RGB"))
    assert figure.shape == (32, 96, 3)
    panels = reconstruct(load_autoencoder(str(pretrained_dir)), image, seed=3)
    np.testing.assert_array_equal(figure, np.concatenate([panels[k] for k in ("original", "masked",
                                                                                "reconstruction")], axis=1))
    crop = EvalTransform(32, 1.0, mean=(0, 0, 0), std=(1, 1, 1))(image).transpose(1, 2, 0) * 255
    np.testing.assert_allclose(panels["original"], crop, atol=1.0)  # the model's view of the image
    removed = np.kron(panels["mask"], np.ones((8, 8)))[..., None].astype(bool)
    assert panels["mask"].sum() == 12
    grey = np.full_like(panels["masked"], round(MASK_GREY * 255))
    np.testing.assert_array_equal(panels["masked"], np.where(removed, grey, panels["original"]))
    np.testing.assert_array_equal(np.where(removed, 0, panels["reconstruction"]), np.where(removed, 0,
                                                                                          panels["original"]))
    assert not np.array_equal(panels["reconstruction"], panels["original"])
