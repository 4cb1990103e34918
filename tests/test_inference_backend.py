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
