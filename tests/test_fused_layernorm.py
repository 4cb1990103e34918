"""The FusedLayerNorm custom op (external_ops/): forward and gradients against paddle.nn.LayerNorm and float64
references, bfloat16, a numerical gradient check, an EVA-02 Ti with either LayerNorm, selection and bad input.

`make test` builds the op first (`make ops`) and sets PADDLEMIX_EVA_REQUIRE_OPS=1, so in CI these tests fail
rather than skip when the op is missing.
"""
import os

import numpy as np
import paddle
import pytest

from paddlemix_eva.layers import norm as ops

try:
    from paddlemix_eva_ops import FusedLayerNorm, fused_layer_norm, fused_layer_norm_op
except ImportError as err:  # pragma: no cover - depends on the environment
    if os.environ.get("PADDLEMIX_EVA_REQUIRE_OPS") == "1":
        raise ImportError(f"the FusedLayerNorm op is required here but not importable ({err}); run `make ops`")
    pytest.skip(f"FusedLayerNorm op not built ({err}); `make ops` builds it", allow_module_level=True)

HIDDEN_SIZES = [64, 192, 384, 768, 1024, 1408, 2730, 17, 1000]
LEADING = {1: [6], 2: [3, 5], 3: [2, 3, 4]}


def reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray, eps: float):
    """y, dx, dw, db in float64 from the textbook formulas."""
    x, w, b, dy = (a.astype(np.float64) for a in (x, w, b, dy))
    mu = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    g = dy * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return xhat * w + b, dx, (dy * xhat).sum(axes), dy.sum(axes)


def run(layer_cls, x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray, eps: float, dtype="float32"):
    layer = layer_cls(x.shape[-1], epsilon=eps)
    layer.to(dtype=dtype)
    layer.weight.set_value(paddle.to_tensor(w).astype(dtype))
    layer.bias.set_value(paddle.to_tensor(b).astype(dtype))
    xt = paddle.to_tensor(x).astype(dtype)
    xt.stop_gradient = False
    y = layer(xt)
    paddle.autograd.backward([y], [paddle.to_tensor(dy).astype(dtype)])
    as_np = lambda t: t.astype("float32").numpy().astype(np.float64)  # noqa: E731
    return as_np(y), as_np(xt.grad), as_np(layer.weight.grad), as_np(layer.bias.grad)


def inputs(shape, seed=0, constant_rows=False):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    if constant_rows:
        x.reshape(-1, shape[-1])[::2] = 0.25  # every other row has zero variance
    w = rng.uniform(0.5, 1.5, shape[-1]).astype(np.float32)
    b = rng.standard_normal(shape[-1]).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    return x, w, b, dy


def assert_close(got, want, tol, name):
    """|got - want| <= tol * (1 + max|want|): 1e-5 relative to the size of the quantity compared."""
    scale = 1.0 + np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol} x {scale:.3g}"


@pytest.mark.parametrize("hidden", HIDDEN_SIZES)
@pytest.mark.parametrize("batch_dims", [1, 2, 3])
def test_float32_matches_paddle_layer_norm(hidden, batch_dims):
    shape = LEADING[batch_dims] + [hidden]
    x, w, b, dy = inputs(shape, seed=hidden + batch_dims, constant_rows=batch_dims == 2)
    fused = run(FusedLayerNorm, x, w, b, dy, 1e-6)
    plain = run(paddle.nn.LayerNorm, x, w, b, dy, 1e-6)
    exact = reference(x, w, b, dy, 1e-6)
    for name, f, p, e in zip(("y", "dx", "dweight", "dbias"), fused, plain, exact):
        assert_close(f, p, 1e-5, name + " vs paddle")
        assert_close(f, e, 1e-5, name + " vs float64")


def test_constant_rows_normalise_to_the_bias():
    x, w, b, dy = inputs([4, 192], constant_rows=True)
    y, dx, _, _ = run(FusedLayerNorm, x, w, b, dy, 1e-6)
    np.testing.assert_allclose(y[::2], np.broadcast_to(b, (2, 192)), atol=1e-6)
    assert np.all(np.isfinite(dx))


@pytest.mark.parametrize("hidden", [192, 1000, 2730])
def test_bfloat16_within_bfloat16_tolerance(hidden):
    x, w, b, dy = inputs([2, 33, hidden], seed=hidden)
    bf16 = lambda a: paddle.to_tensor(a).astype("bfloat16").astype("float32").numpy()  # noqa: E731
    xq, wq, bq, dyq = bf16(x), bf16(w), bf16(b), bf16(dy)  # what the op sees
    got = run(FusedLayerNorm, xq, wq, bq, dyq, 1e-6, dtype="bfloat16")
    exact = reference(xq, wq, bq, dyq, 1e-6)
    for name, g, e, tol in zip(("y", "dx", "dweight", "dbias"), got, exact, (1e-2, 1e-2, 1e-2, 1e-2)):
        assert_close(g, e, tol, name)  # bfloat16 keeps 8 bits of mantissa: ~4e-3 relative per rounding


def test_bfloat16_input_with_float32_parameters():
    x, w, b, _ = inputs([5, 64])
    xt = paddle.to_tensor(x).astype("bfloat16")
    y = fused_layer_norm(xt, paddle.to_tensor(w), paddle.to_tensor(b), 1e-6)
    assert y.dtype == paddle.bfloat16
    exact = reference(xt.astype("float32").numpy(), w, b, np.zeros_like(x), 1e-6)[0]
    assert_close(y.astype("float32").numpy(), exact, 1e-2, "y")


def test_float16_on_cpu_runs_in_float32():
    """Neither the op nor Paddle's CPU layer_norm has a float16 kernel: the layer computes in float32, casts back."""
    x, w, b, dy = inputs([3, 5, 96], seed=7)
    f16 = lambda a: paddle.to_tensor(a).astype("float16").astype("float32").numpy()  # noqa: E731
    xq, wq, bq, dyq = f16(x), f16(w), f16(b), f16(dy)
    got = run(FusedLayerNorm, xq, wq, bq, dyq, 1e-6, dtype="float16")
    exact = reference(xq, wq, bq, dyq, 1e-6)
    for name, g, e in zip(("y", "dx", "dweight", "dbias"), got, exact):
        assert_close(g, e, 2e-3, name)  # float16 keeps 11 bits: ~5e-4 relative per rounding
    norm = FusedLayerNorm(96)
    norm.to(dtype="float16")
    assert norm(paddle.to_tensor(xq).astype("float16")).dtype == paddle.float16


def test_numerical_gradient_check_in_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal([3, 7])
    w, b = rng.uniform(0.5, 1.5, 7), rng.standard_normal(7)
    probe = rng.standard_normal([3, 7])  # loss = sum(y * probe)

    def loss(xv, wv, bv):
        y, _, _ = fused_layer_norm_op(*(paddle.to_tensor(a) for a in (xv, wv, bv)), 1e-5)
        return float((y.numpy() * probe).sum())

    tensors = [paddle.to_tensor(a, stop_gradient=False) for a in (x, w, b)]
    y, _, _ = fused_layer_norm_op(*tensors, 1e-5)
    (y * paddle.to_tensor(probe)).sum().backward()
    for index, (value, tensor) in enumerate(zip((x, w, b), tensors)):
        numeric = np.zeros_like(value)
        for pos in np.ndindex(value.shape):
            args = [x.copy(), w.copy(), b.copy()]
            args[index][pos] += 1e-6
            up = loss(*args)
            args[index][pos] -= 2e-6
            numeric[pos] = (up - loss(*args)) / 2e-6
        np.testing.assert_allclose(tensor.grad.numpy(), numeric, rtol=1e-6, atol=1e-7)


def test_same_parameters_and_state_dict_as_paddle_layer_norm():
    fused, plain = FusedLayerNorm(96, epsilon=1e-6), paddle.nn.LayerNorm(96, epsilon=1e-6)
    assert isinstance(fused, paddle.nn.LayerNorm)
    assert {k: list(v.shape) for k, v in fused.state_dict().items()} == \
        {k: list(v.shape) for k, v in plain.state_dict().items()}
    plain.set_state_dict(fused.state_dict())


def eva02_ti(image_size=112):
    from paddlemix_eva import zoo
    from paddlemix_eva.models import EVA02VisionTransformer

    return EVA02VisionTransformer(zoo.build_config(zoo.get_entry("eva02_Ti_pt_in21k_ft_in1k_p14"),
                                                   image_size=image_size))


def test_eva02_ti_same_logits_and_gradients_with_either_layer_norm():
    from paddlemix_eva.layers import switches

    with_fused = eva02_ti()
    with switches.FUSED_LAYER_NORM.overridden(False):
        with_plain = eva02_ti()
    kinds = {type(layer) for layer in with_fused.sublayers()}
    assert FusedLayerNorm in kinds and FusedLayerNorm not in {type(layer) for layer in with_plain.sublayers()}
    with_plain.set_state_dict(with_fused.state_dict())
    images = paddle.to_tensor(np.random.default_rng(0).standard_normal([2, 3, 112, 112]).astype(np.float32))
    results = []
    for model in (with_fused, with_plain):
        model.train()
        logits = model(images)
        (logits * paddle.arange(1000, dtype="float32") / 1000).sum().backward()
        grads = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logits.numpy(), grads))
    assert len(results[0][1]) == len(results[1][1]) > 100  # every trainable block parameter
    assert any("norm" in name for name in results[0][1])
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    for name, grad in results[0][1].items():
        assert_close(grad, results[1][1][name], 1e-4, name)


def test_selection_follows_the_switch_and_its_environment_default(monkeypatch, caplog):
    import logging

    from paddlemix_eva.layers import switches

    caplog.set_level(logging.INFO, logger="paddlemix_eva.layers.norm")
    assert ops.fused_layer_norm_class() is FusedLayerNorm
    monkeypatch.setenv(ops.DISABLE_FUSED_LN_ENV, "1")  # the default, read at each build
    assert ops.fused_layer_norm_class() is paddle.nn.LayerNorm
    switches.FUSED_LAYER_NORM.set(True)  # explicit beats the environment
    assert ops.fused_layer_norm_class() is FusedLayerNorm
    monkeypatch.delenv(ops.DISABLE_FUSED_LN_ENV)
    switches.FUSED_LAYER_NORM.set(False)
    assert ops.fused_layer_norm_class() is paddle.nn.LayerNorm
    switches.FUSED_LAYER_NORM.set(None)
    assert ops.fused_layer_norm_class() is FusedLayerNorm
    assert "LayerNorm: FusedLayerNorm custom op" in caplog.text and "LayerNorm: paddle.nn.LayerNorm" in caplog.text


# ---------------------------------------------------------------------------------------------- bad input
def test_input_that_does_not_match_normalized_shape_is_refused():
    norm = FusedLayerNorm(64)
    with pytest.raises(ValueError, match=r"normalized_shape=\[64\].*\[4, 65\].*must be 64"):
        norm(paddle.randn([4, 65]))
    with pytest.raises(ValueError, match="last dimension only"):
        FusedLayerNorm([8, 64])
    with pytest.raises(OSError,
                       match=r"Scale must have shape \[65\] \(the last dimension of X \[4, 65\]\), got \[64\]"):
        fused_layer_norm_op(paddle.randn([4, 65]), norm.weight, norm.bias, 1e-5)


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="floating-point input, got paddle.int64"):
        FusedLayerNorm(8)(paddle.ones([2, 8], dtype="int64"))
    with pytest.raises(OSError, match="X must be float32, float64 or bfloat16.*got int32"):
        norm = FusedLayerNorm(8)
        fused_layer_norm_op(paddle.ones([2, 8], dtype="int32"), norm.weight, norm.bias, 1e-5)


@pytest.fixture
def stride_kernels():
    """Paddle's default view semantics (training entry points switch them off process-wide)."""
    before = paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]
    paddle.set_flags({"FLAGS_use_stride_kernel": True})
    yield
    paddle.set_flags({"FLAGS_use_stride_kernel": before})


def test_non_contiguous_input_gives_the_correct_result(stride_kernels):
    """Strided views (transposes, slices) are normalised as their values, not as their storage."""
    norm = FusedLayerNorm(32, epsilon=1e-6)
    base = paddle.randn([6, 4, 32])
    for view in (base.transpose([1, 0, 2]), base[:, ::2]):
        assert not view.is_contiguous()
        expected = paddle.nn.functional.layer_norm(view.contiguous(), [32], norm.weight, norm.bias, 1e-6)
        np.testing.assert_allclose(norm(view).numpy(), expected.numpy(), atol=1e-6)
        np.testing.assert_allclose(fused_layer_norm_op(view, norm.weight, norm.bias, 1e-6)[0].numpy(),
                                   expected.numpy(), atol=1e-6)


def test_float64_runs_and_static_graphs_use_paddles_kernel():
    """Exports (`paddle.jit.save`) must load without this library: traced graphs hold Paddle's layer_norm."""
    norm64 = FusedLayerNorm(16)
    norm64.to(dtype="float64")
    x = paddle.randn([3, 16], dtype="float64")
    np.testing.assert_allclose(norm64(x).numpy(),
                               paddle.nn.functional.layer_norm(x, [16], norm64.weight, norm64.bias, 1e-5).numpy(),
                               atol=1e-12)
    norm = FusedLayerNorm(16)
    static = paddle.jit.to_static(norm, input_spec=[paddle.static.InputSpec([None, 16], "float32")], full_graph=True)
    xs = paddle.randn([3, 16])
    np.testing.assert_allclose(static(xs).numpy(), norm(xs).numpy(), atol=1e-6)
    program = static.forward.concrete_program.main_program
    names = {op.name() for op in program.global_block().ops}
    assert "pd_op.layer_norm" in names and not any("fused_layer_norm" in n for n in names)
