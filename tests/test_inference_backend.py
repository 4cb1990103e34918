"""The CPU fast paths: fused CPU attention (inference only) and the Paddle Inference backend."""
import os

import numpy as np
import paddle
import pytest

from paddlemix_eva.layers import Attention, cpu_fused_attention, cpu_fused_attention_available
from paddlemix_eva.models import EVA02VisionTransformer
from paddlemix_eva.tasks.export import compile_for_cpu


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


# ------------------------------------------------------------------------------------ export directories
from paddlemix_eva.tasks.export import cpu_has_bf16, export_model, load_exported  # noqa: E402
from paddlemix_eva.tasks.inference import inference_model  # noqa: E402


def _images(n, size, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def test_exported_model_matches_the_eager_model_and_keeps_its_config(tiny_eva02_config, tmp_path):
    tiny_eva02_config.class_names = [f"c{i}" for i in range(10)]
    model = EVA02VisionTransformer(tiny_eva02_config).eval()
    out = export_model(model, str(tmp_path / "export"))
    exported = load_exported(out, num_threads=2)
    images = _images(3, 56)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(images)).numpy()
    np.testing.assert_allclose(exported(images), expected, rtol=1e-5, atol=1e-5)
    assert exported.image_size == 56 and exported.config["class_names"][3] == "c3"
    photo = (np.random.default_rng(1).random((70, 90, 3)) * 255).astype(np.uint8)
    via_exported, via_model = inference_model(exported, photo), inference_model(model, photo)
    assert via_exported["pred_class"] == via_model["pred_class"]
    assert via_exported["pred_score"] == pytest.approx(via_model["pred_score"], rel=1e-4)


def test_running_an_export_at_another_size_is_refused(tiny_eva02_config, tmp_path):
    model = EVA02VisionTransformer(tiny_eva02_config).eval()
    exported = load_exported(export_model(model, str(tmp_path / "export")))
    with pytest.raises(ValueError, match=r"exported for 56 px images.*got 84 px images.*--input-size 84"):
        exported(_images(1, 84))


def test_export_at_another_input_size_leaves_the_model_alone(tiny_eva02_config, tmp_path):
    model = EVA02VisionTransformer(tiny_eva02_config).eval()
    before = model.pos_embed.numpy().copy()
    exported = load_exported(export_model(model, str(tmp_path / "export84"), input_size=84))
    np.testing.assert_array_equal(model.pos_embed.numpy(), before)
    assert model.config.image_size == 56 and exported.image_size == 84
    resized = EVA02VisionTransformer(tiny_eva02_config)
    resized.set_state_dict(model.state_dict())
    resized.set_input_size(84)
    resized.eval()
    images = _images(2, 84)
    with paddle.no_grad():
        expected = resized(paddle.to_tensor(images)).numpy()
    np.testing.assert_allclose(exported(images), expected, rtol=1e-5, atol=1e-5)


def test_bf16_export_stays_close_to_fp32(tiny_eva02_config, tmp_path):
    if not cpu_has_bf16():
        with pytest.raises(ValueError, match="native bfloat16"):
            export_model(EVA02VisionTransformer(tiny_eva02_config), str(tmp_path / "bf16"), dtype="bf16")
        pytest.skip("this CPU has no native bfloat16 (AVX512-BF16 / AMX)")
    model = EVA02VisionTransformer(tiny_eva02_config).eval()
    with paddle.no_grad():
        model.head.weight.set_value(model.head.weight * 30.0)  # logits of order 1, as a trained head gives
    fp32 = load_exported(export_model(model, str(tmp_path / "fp32")))
    bf16 = load_exported(export_model(model, str(tmp_path / "bf16"), dtype="bf16"))
    images = _images(8, 56)
    a, b = fp32(images), bf16(images)
    gap = np.abs(a - b).max() / np.abs(a).max()
    assert 0 < gap < 0.05, gap  # bfloat16 keeps 8 mantissa bits; different from fp32 proves bf16 kernels ran
    assert bf16.dtype == "bf16" and "bf16=True" in repr(bf16)


def test_missing_export_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not an exported model.*paddlemix-eva export"):
        load_exported(str(tmp_path))
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_model(paddle.nn.Linear(2, 2), str(tmp_path / "x"), dtype="int8")


def test_predictors_leave_the_eager_thread_setting_alone():
    """Paddle Inference sets MKL to one thread when a predictor is built and run; the eager kernels chosen here
    (all cores by default) get their setting back."""
    import ctypes
    import glob

    from paddlemix_eva import zoo
    from paddlemix_eva.tasks.export import compile_for_cpu
    from paddlemix_eva.utils import runtime

    found = glob.glob(os.path.join(os.path.dirname(paddle.__file__), "libs", "libmklml_intel.so"))
    if not found:
        pytest.skip("this Paddle wheel ships no libmklml_intel.so to read MKL's thread count from")
    mkl = ctypes.CDLL(found[0])
    runtime.set_cpu_threads(2)
    model = zoo.get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=28, layers=1).eval()
    predictor = compile_for_cpu(model, num_threads=1)
    assert mkl.MKL_Get_Max_Threads() == 2
    predictor(np.zeros([1, 3, 28, 28], np.float32))
    assert mkl.MKL_Get_Max_Threads() == 2
