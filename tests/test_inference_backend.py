"""The CPU fast paths: fused CPU attention (inference only) and the Paddle Inference backend."""
import numpy as np
import paddle
import pytest

from paddlemix_eva.inference_backend import compile_for_cpu
from paddlemix_eva.layers import Attention, cpu_fused_attention, cpu_fused_attention_available
from paddlemix_eva.models import EVA02VisionTransformer


def test_fused_cpu_attention_equals_the_matmul_path():
    if not cpu_fused_attention_available():
        pytest.skip("Paddle's fused CPU attention kernel needs AVX-512")
    attn = Attention(128, num_heads=2)
    qkv = paddle.randn([2, 17, 3, 2, 64])
    fused = cpu_fused_attention(qkv, attn.scale, 2).numpy()
    reference = attn._matmul_attention(qkv, None, None).numpy()
    np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-6)


def test_training_never_takes_the_gradient_free_fused_path(tiny_eva02_config):
    """With gradients required, every parameter of every block gets one (the fused op has no backward)."""
    tiny_eva02_config.stop_grad_conv1 = False
    model = EVA02VisionTransformer(tiny_eva02_config)
    model.eval()  # eval mode but gradients needed (e.g. saliency): must still be differentiable
    model(paddle.randn([2, 3, 56, 56])).square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and np.any(param.grad.numpy()), name


def test_eval_forward_is_the_same_with_and_without_grad(tiny_eva02_config):
    model = EVA02VisionTransformer(tiny_eva02_config)
    model.eval()
    x = paddle.randn([2, 3, 56, 56])
    with paddle.no_grad():
        fast = model(x).numpy()
    x.stop_gradient = False  # forces the differentiable matmul path
    slow = model(x).numpy()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_exported_predictor_matches_the_eager_model(tiny_eva02_config, tmp_path):
    model = EVA02VisionTransformer(tiny_eva02_config)
    model.eval()
    images = np.random.default_rng(0).standard_normal((3, 3, 56, 56)).astype(np.float32)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(images)).numpy()
    predictor = compile_for_cpu(model, num_threads=2, workdir=str(tmp_path))
    np.testing.assert_allclose(predictor(images), expected, rtol=1e-5, atol=1e-5)
    # the batch dimension is dynamic
    np.testing.assert_allclose(predictor(images[:1]), expected[:1], rtol=1e-5, atol=1e-5)
    assert model.training is False and any(p.name.endswith((".json", ".pdmodel")) for p in tmp_path.iterdir())


def test_attention_with_wrapped_projections_computes_the_same(tiny_eva02_config):
    """Tensor-parallel projections (layers that are not plain `nn.Linear`) take the per-projection path."""

    class WrappedLinear(paddle.nn.Linear):
        pass

    model = EVA02VisionTransformer(tiny_eva02_config)
    model.eval()
    x = paddle.randn([2, 3, 56, 56])
    with paddle.no_grad():
        expected = model(x).numpy()
        for blk in model.blocks:
            for name in ("q_proj", "k_proj", "v_proj"):
                plain = getattr(blk.attn, name)
                wrapped = WrappedLinear(*plain.weight.shape, bias_attr=None if plain.bias is not None else False)
                wrapped.set_state_dict(plain.state_dict())
                setattr(blk.attn, name, wrapped)
        np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_tensor_parallel_mappings_split_and_merge_every_linear():
    from paddlemix_eva import zoo
    from paddlemix_eva.models import EVA02VisionTransformer as Model

    config = zoo.build_config(zoo.get_entry("eva02_Ti_pt_in21k_ft_in1k_p14"), layers=2, num_classes=10)
    config.tensor_parallel_degree, config.tensor_parallel_rank = 2, 1
    model = Model(config)
    full = {k: v.numpy() for k, v in model.state_dict().items()}
    split = Model._get_tensor_parallel_mappings(config, is_split=True)
    merge = Model._get_tensor_parallel_mappings(config, is_split=False)
    assert "blocks.0.attn.q_proj.weight" in split and "blocks.1.mlp.w3.bias" in split and "head.weight" in split
    assert not any("norm" in k or k in ("pos_embed", "cls_token") for k in split)
    for key, fn in split.items():
        parts = [np.split(full[key], 2, axis=-1)[r] for r in range(2)]
        np.testing.assert_array_equal(fn(full[key]), parts[1])  # rank 1's columns
        np.testing.assert_array_equal(merge[key](parts), full[key])
