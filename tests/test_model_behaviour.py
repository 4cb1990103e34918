"""EVA-02 model behaviour beyond parity: input checks, resizing, upstream initialisation, gradients, MIM masking."""
import logging
import math

import numpy as np
import paddle
import pytest

from paddlemix_eva import get_model
from paddlemix_eva.layers import resample_abs_pos_embed
from paddlemix_eva.models import (
    EVA02VisionTransformer,
    EVA02VisionTransformerForMIM,
    EVA02VisionTransformerForMIMConfig,
)


def _mim_config(classifier_config, **overrides):
    fields = {k: getattr(classifier_config, k) for k in (
        "image_size", "patch_size", "embed_dim", "layers", "num_heads", "mlp_ratio", "qkv_bias", "naiveswiglu",
        "subln", "rope", "intp_freq", "pt_hw_seq_len")}
    fields.update(predict_feature_dim=16, **overrides)
    return EVA02VisionTransformerForMIMConfig(**fields)


# --------------------------------------------------------------------------------------- bad input
def test_wrong_image_size_is_refused_with_the_expected_size(tiny_eva02_config):
    model = EVA02VisionTransformer(tiny_eva02_config)
    with pytest.raises(ValueError, match=r"built for 56x56 images.*got 70x70.*set_input_size"):
        model(paddle.randn([1, 3, 70, 70]))


def test_wrong_channel_count_is_refused(tiny_eva02_config):
    model = EVA02VisionTransformer(tiny_eva02_config)
    with pytest.raises(ValueError, match=r"expects 3-channel images.*got 1 channels"):
        model(paddle.randn([2, 1, 56, 56]))
    with pytest.raises(ValueError, match=r"4-D image batch"):
        model(paddle.randn([3, 56, 56]))


def test_invalid_configs_are_refused(tiny_eva02_config):
    fields = dict(tiny_eva02_config.to_dict(), image_size=60)
    fields.pop("model_type", None)
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        type(tiny_eva02_config)(**fields)
    with pytest.raises(NotImplementedError, match="use_rel_pos_bias"):
        type(tiny_eva02_config)(use_rel_pos_bias=True)


# ------------------------------------------------------------------------------------ input size
def test_set_input_size_resamples_pos_embed_and_rebuilds_rope(tiny_eva02_config):
    model = EVA02VisionTransformer(tiny_eva02_config)
    model.eval()
    old_pos = model.pos_embed.numpy()
    model.set_input_size(84)  # 4x4 -> 6x6 grid
    expected = resample_abs_pos_embed(paddle.to_tensor(old_pos), (6, 6)).numpy()
    np.testing.assert_array_equal(model.pos_embed.numpy(), expected)
    assert model.rope.grid_size == (6, 6) and model.rope.tables()[0].shape == [37, 32 * 2]
    assert model(paddle.randn([1, 3, 84, 84])).shape == [1, 10]
    with pytest.raises(ValueError, match="built for 84x84"):
        model(paddle.randn([1, 3, 56, 56]))
    # the resized model is trainable end to end
    model.train()
    model(paddle.randn([1, 3, 84, 84])).sum().backward()
    assert model.pos_embed.grad is not None


def test_checkpoint_at_another_size_loads_only_through_interpolation_with_a_warning(
    tiny_eva02_config, tmp_path, caplog
):
    model = EVA02VisionTransformer(tiny_eva02_config)
    model.save_pretrained(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        bigger = EVA02VisionTransformer.from_pretrained(str(tmp_path), image_size=84)
    assert any("interpolating it bicubically" in r.getMessage() for r in caplog.records)
    expected = resample_abs_pos_embed(model.pos_embed, (6, 6)).numpy()
    np.testing.assert_allclose(bigger.pos_embed.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(bigger.blocks[1].mlp.w3.weight.numpy(), model.blocks[1].mlp.w3.weight.numpy())


# ----------------------------------------------------------------------------- initialisation
def test_classifier_init_is_upstreams():
    model = get_model("eva02_Ti_pt_in21k_ft_in1k_p14")
    assert abs(model.head.weight.numpy().std() - 0.02 * 0.001) < 0.1 * 0.02 * 0.001  # head x init_scale
    assert np.all(model.head.bias.numpy() == 0)
    for layer_id in (1, 12):
        blk = model.blocks[layer_id - 1]
        for linear in (blk.attn.proj, blk.mlp.w3):  # residual outputs / sqrt(2 * layer_id)
            expected = 0.02 / math.sqrt(2 * layer_id)
            assert abs(linear.weight.numpy().std() - expected) < 0.08 * expected
    assert abs(model.blocks[0].attn.q_proj.weight.numpy().std() - 0.02) < 0.002
    assert abs(model.pos_embed.numpy().std() - 0.02) < 0.002
    np.testing.assert_array_equal(model.blocks[3].norm1.weight.numpy(), 1.0)


def test_mim_init_is_upstreams_xavier_and_subln_rescale(tiny_eva02_config):
    model = get_model("eva02_Ti_pt_in21k_p14")
    q = model.blocks[0].attn.q_proj.weight.numpy()  # xavier-normal: std sqrt(2 / (fan_in + fan_out))
    assert abs(q.std() - math.sqrt(2.0 / (192 + 192))) < 0.05 * math.sqrt(2.0 / 384)
    conv = model.patch_embed.proj.weight.numpy()  # xavier-uniform on [out, in*k*k]
    limit = math.sqrt(6.0 / (3 * 14 * 14 + 192))
    assert np.abs(conv).max() <= limit and np.abs(conv).max() > 0.95 * limit
    for param in (model.pos_embed, model.cls_token, model.mask_token):  # truncated at +-1 std
        assert np.abs(param.numpy()).max() <= 0.02 + 1e-7
    # sub-LN models (B/L) scale FFN and attention value/output parameters by sqrt(ln(2 L))
    paddle.seed(3)
    plain = EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config, subln=False, naiveswiglu=False, swiglu=True))
    paddle.seed(3)
    subln = EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config))
    gain = math.sqrt(math.log(2 * tiny_eva02_config.layers))
    ratio = subln.blocks[0].mlp.w1.weight.numpy().std() / plain.blocks[0].mlp.w1.weight.numpy().std()
    assert abs(ratio - gain) < 0.08 * gain
    np.testing.assert_array_equal(subln.blocks[0].mlp.ffn_ln.weight.numpy(), 1.0)


# ---------------------------------------------------------------------------------- gradients
def _patch_embed_grad(model, image, loss_fn):
    model.train()
    model.clear_gradients()
    loss_fn(model, image).backward()
    grad = model.patch_embed.proj.weight.grad
    return None if grad is None else grad.numpy().copy()


def test_stop_grad_conv1_detaches_the_patch_embedding_when_finetuning(tiny_eva02_config):
    model = EVA02VisionTransformer(tiny_eva02_config)
    image = paddle.randn([2, 3, 56, 56])
    grad = _patch_embed_grad(model, image, lambda m, x: m(x).square().mean())
    assert grad is None or not np.any(grad)
    model.config.stop_grad_conv1 = False
    assert np.any(_patch_embed_grad(model, image, lambda m, x: m(x).square().mean()))


def test_stop_grad_conv1_passes_a_tenth_of_the_gradient_in_mim(tiny_eva02_config):
    model = EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config))
    image = paddle.randn([2, 3, 56, 56])
    mask = paddle.to_tensor(np.random.default_rng(0).random((2, 16)) < 0.4)
    loss = lambda m, x: m(x, mask).square().mean()  # noqa: E731
    tenth = _patch_embed_grad(model, image, loss)
    model.config.stop_grad_conv1 = False
    full = _patch_embed_grad(model, image, loss)
    np.testing.assert_allclose(tenth, 0.1 * full, rtol=1e-4, atol=1e-7)


def test_recompute_gives_the_same_gradients(tiny_eva02_config):
    model = EVA02VisionTransformer(tiny_eva02_config)
    image = paddle.randn([2, 3, 56, 56])
    grads = []
    for recompute in (False, True):
        model.config.enable_recompute = recompute
        model.train()
        model.clear_gradients()
        model(image).square().mean().backward()
        grads.append(model.blocks[0].attn.q_proj.weight.grad.numpy().copy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------------- MIM head
def test_mim_predicts_masked_tokens_from_context_only(tiny_eva02_config):
    model = EVA02VisionTransformerForMIM(_mim_config(tiny_eva02_config))
    model.eval()
    rng = np.random.default_rng(0)
    image = rng.standard_normal((2, 3, 56, 56)).astype(np.float32)
    mask = rng.random((2, 4, 4)) < 0.5
    with paddle.no_grad():
        masked_out = model(paddle.to_tensor(image), paddle.to_tensor(mask)).numpy()
        every = model(paddle.to_tensor(image), paddle.to_tensor(mask), return_all_tokens=True).numpy()
    assert masked_out.shape == (mask.sum(), 16)
    np.testing.assert_allclose(masked_out, every.reshape(2, 16, 16)[mask.reshape(2, 16)], atol=1e-6)
    # pixels under masked patches never reach the model: changing them changes nothing
    altered = image.copy()
    for b, r, c in zip(*np.nonzero(mask)):
        altered[b, :, r * 14:(r + 1) * 14, c * 14:(c + 1) * 14] = rng.standard_normal((3, 14, 14))
    with paddle.no_grad():
        again = model(paddle.to_tensor(altered), paddle.to_tensor(mask)).numpy()
    np.testing.assert_allclose(again, masked_out, atol=1e-6)
    with pytest.raises(ValueError, match="one flag per patch"):
        model(paddle.to_tensor(image), paddle.to_tensor(mask[:, :2]))
