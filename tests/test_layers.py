"""The shared building blocks, checked against direct NumPy / PyTorch computations."""
import numpy as np
import paddle
import pytest

from paddlemix_eva.layers import (
    Attention,
    DropPath,
    SwiGLU,
    VisionRotaryEmbedding,
    apply_rope,
    make_layer_norm,
    resample_abs_pos_embed,
    rope_angles,
    scale_gradient,
)

from peers import import_torch


def test_rope_angles_follow_the_eva02_convention():
    head_dim, grid, pt = 64, (24, 24), 16
    angles = rope_angles(grid, head_dim, pt)
    assert angles.shape == (24 * 24, 64)
    freqs = 10000.0 ** (-np.arange(16) / 16)
    pos = np.arange(24) * pt / 24  # positions rescaled into the 16x16 pre-training grid
    for token, (row, col) in [(0, (0, 0)), (1, (0, 1)), (24 * 5 + 7, (5, 7)), (575, (23, 23))]:
        expected_rows = np.repeat(pos[row] * freqs, 2)  # pair (2j, 2j+1) shares frequency j
        expected_cols = np.repeat(pos[col] * freqs, 2)
        np.testing.assert_allclose(angles[token, :32], expected_rows, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(angles[token, 32:], expected_cols, rtol=1e-6, atol=1e-5)
    # no rescale: integer positions
    np.testing.assert_allclose(rope_angles((3, 3), 64, None)[4, :2], [1.0, 1.0])


def test_apply_rope_rotates_interleaved_pairs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
    theta = rng.uniform(-3, 3, (5, 8)).astype(np.float32)
    theta[:, 1::2] = theta[:, 0::2]  # one angle per pair, as the tables hold them
    out = apply_rope(paddle.to_tensor(x), paddle.to_tensor(np.cos(theta)), paddle.to_tensor(np.sin(theta))).numpy()
    as_complex = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * theta[:, 0::2])
    np.testing.assert_allclose(out[..., 0::2], as_complex.real, atol=1e-5)
    np.testing.assert_allclose(out[..., 1::2], as_complex.imag, atol=1e-5)


def test_rope_buffers_are_not_persisted_and_follow_the_grid():
    rope = VisionRotaryEmbedding(64, (16, 16), pt_seq_len=16)
    assert len(rope.state_dict()) == 0
    cos, sin = rope.tables()
    assert cos.shape == [257, 64]
    np.testing.assert_array_equal(cos.numpy()[0], 1.0)  # cls row: identity rotation
    np.testing.assert_array_equal(sin.numpy()[0], 0.0)
    rope.set_grid_size((24, 24))
    cos24, _ = rope.tables()
    assert cos24.shape == [577, 64]
    # the 24-grid positions are the 16-grid positions rescaled: token (3, 3) at 24 sits at 2.0 == token (2, 2) at 16
    at_16 = VisionRotaryEmbedding(64, (16, 16), pt_seq_len=16).tables()[0].numpy()
    np.testing.assert_allclose(cos24.numpy()[1 + 3 * 24 + 3], at_16[1 + 2 * 16 + 2], atol=1e-6)


def test_layer_norm_factory_uses_eps_1e6():
    norm = make_layer_norm()(8)
    assert abs(norm._epsilon - 1e-6) < 1e-12


def test_swiglu_formula():
    rng = np.random.default_rng(0)
    ffn = SwiGLU(6, 10, norm_layer=make_layer_norm(), subln=True)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    w = {k: v.numpy() for k, v in ffn.state_dict().items()}
    h = x @ w["w1.weight"] + w["w1.bias"]
    h = h / (1 + np.exp(-h)) * (x @ w["w2.weight"] + w["w2.bias"])
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    h = h * w["ffn_ln.weight"] + w["ffn_ln.bias"]
    expected = h @ w["w3.weight"] + w["w3.bias"]
    np.testing.assert_allclose(ffn(paddle.to_tensor(x)).numpy(), expected, atol=1e-5)


def test_attention_matches_numpy_with_causal_mask():
    rng = np.random.default_rng(0)
    attn = Attention(8, num_heads=2, qkv_bias=True, k_bias=True)
    attn.eval()
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    w = {k: v.numpy() for k, v in attn.state_dict().items()}
    q, k, v = (x @ w[f"{n}_proj.weight"] + w[f"{n}_proj.bias"] for n in "qkv")
    split = lambda t: t.reshape(2, 5, 2, 4).transpose(0, 2, 1, 3)  # noqa: E731
    logits = split(q) @ split(k).transpose(0, 1, 3, 2) / 2.0
    causal = np.triu(np.ones((5, 5), bool), 1)
    logits = np.where(causal, -np.inf, logits)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ split(v)).transpose(0, 2, 1, 3).reshape(2, 5, 8) @ w["proj.weight"] + w["proj.bias"]
    additive = paddle.to_tensor(np.where(causal, -np.inf, 0.0).astype(np.float32))
    boolean = paddle.to_tensor(~causal)
    np.testing.assert_allclose(attn(paddle.to_tensor(x), attn_mask=additive).numpy(), out, atol=1e-5)
    np.testing.assert_allclose(attn(paddle.to_tensor(x), attn_mask=boolean).numpy(), out, atol=1e-5)


def test_vision_attention_has_no_k_bias():
    attn = Attention(8, num_heads=2, qkv_bias=True)
    assert attn.k_proj.bias is None and attn.q_proj.bias is not None and attn.v_proj.bias is not None


def test_drop_path_drops_whole_samples_and_rescales():
    layer = DropPath(0.5)
    x = paddle.ones([4000, 3, 2])
    layer.train()
    out = layer(x).numpy()
    per_sample = out.reshape(4000, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert (per_sample.min(1) == per_sample.max(1)).all()  # a sample is kept or dropped as a whole
    assert abs(out.mean() - 1.0) < 0.06  # expectation preserved
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())


@pytest.mark.parametrize("scale", [0.0, 0.1, 1.0])
def test_scale_gradient(scale):
    x = paddle.to_tensor(np.linspace(-1, 1, 6).astype(np.float32), stop_gradient=False)
    y = scale_gradient(x, scale)
    np.testing.assert_array_equal(y.numpy(), x.numpy())  # exact identity forward
    (y * 3.0).sum().backward()
    expected = np.full(6, 3.0 * scale, np.float32)
    if scale == 0.0:
        assert x.grad is None or np.all(x.grad.numpy() == 0)
    else:
        np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_pos_embed_resampling_matches_torch_bicubic_without_antialias():
    torch = import_torch()
    rng = np.random.default_rng(0)
    pos = rng.standard_normal((1, 1 + 16 * 16, 12)).astype(np.float32)
    out = resample_abs_pos_embed(paddle.to_tensor(pos), (24, 24)).numpy()
    grid = torch.tensor(pos[:, 1:]).reshape(1, 16, 16, 12).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(24, 24), mode="bicubic", align_corners=False, antialias=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, 576, 12).numpy()
    np.testing.assert_array_equal(out[:, :1], pos[:, :1])  # cls row kept
    np.testing.assert_allclose(out[:, 1:], ref, atol=2e-6)
