"""The shared blocks on the fused CPU kernels (external_ops' oneDNN linear with bias and residual in the GEMM,
packed SwiGLU, RoPE written into the attention layout) against the same blocks on Paddle's plain kernels: equal
outputs and gradients to float32 rounding in every block variant the families build, and the plain path wherever
the kernels do not run (switch off, static graphs, other dtypes)."""
import os

import numpy as np
import paddle
import pytest

from paddlemix_eva.layers import Block, VisionRotaryEmbedding, cpu_kernels, switches

from tolerances import assert_float32_close

REQUIRE = os.environ.get("PADDLEMIX_EVA_REQUIRE_OPS") == "1"


@pytest.fixture
def kernels():
    ops = cpu_kernels._ops()
    if ops is None or not ops.onednn_info().available:
        if REQUIRE:
            pytest.fail("the fused CPU ops (with oneDNN) are required here; run `make ops`")
        pytest.skip("fused CPU ops not built; the blocks run Paddle's kernels (the plain path is tested everywhere)")
    return ops


# (dim, heads, hidden, swiglu, subln, inner_attn_ln, qkv_bias, rope): EVA-02 Ti/S (fused SwiGLU, RoPE), EVA-02 B/L
# (SwiGLU + sub-LN), EVA-CLIP EVA-02 towers (inner LN), EVA-01 / MAE / DeiT (GELU MLP, no RoPE)
VARIANTS = {
    "eva02_ti": (64, 2, 170, True, False, False, True, True),
    "eva02_b": (64, 2, 170, True, True, False, True, True),
    "evaclip_eva02": (64, 2, 170, True, True, True, True, True),
    "gelu_vit": (64, 2, 256, False, False, False, True, False),
    "no_qkv_bias": (64, 2, 256, False, False, False, False, False),
}
GRID = 4  # 4x4 patches + cls


def build(variant: str, drop_path: float = 0.0) -> Block:
    dim, heads, hidden, swiglu, subln, inner_ln, qkv_bias, _ = VARIANTS[variant]
    paddle.seed(1)
    return Block(dim, heads, hidden, qkv_bias=qkv_bias, swiglu=swiglu, subln=subln, inner_attn_ln=inner_ln,
                 drop_path=drop_path)


def rope_tables(variant: str):
    dim, heads, *_, rope = VARIANTS[variant]
    if not rope:
        return None
    return VisionRotaryEmbedding(dim // heads, (GRID, GRID)).tables()  # the cls row is the identity rotation


def run(block: Block, x: np.ndarray, rope, fused: bool, train: bool = True):
    block.train() if train else block.eval()
    for p in block.parameters():
        p.clear_gradient()
    xt = paddle.to_tensor(x, stop_gradient=False)
    with switches.FUSED_CPU_OPS.overridden(fused):
        out = block(xt, rope)
        (out * paddle.to_tensor(np.linspace(-1, 1, out.shape[-1]).astype("float32"))).sum().backward()
    grads = {n: p.grad.numpy() for n, p in block.named_parameters() if p.grad is not None}
    return out.numpy(), xt.grad.numpy(), grads


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_block_forward_and_gradients_equal_the_plain_kernels(kernels, variant):
    block = build(variant)
    rope = rope_tables(variant)
    x = np.random.default_rng(0).standard_normal([2, GRID * GRID + 1, VARIANTS[variant][0]]).astype("float32")
    fused_out, fused_dx, fused_grads = run(block, x, rope, fused=True)
    plain_out, plain_dx, plain_grads = run(block, x, rope, fused=False)
    terms = 4 * VARIANTS[variant][2]  # the longest reduction: the hidden width, plus the rest of the chain
    assert_float32_close(fused_out, plain_out, terms)
    assert_float32_close(fused_dx, plain_dx, terms)
    assert set(fused_grads) == set(plain_grads) == {n for n, p in block.named_parameters() if not p.stop_gradient}
    for name, grad in plain_grads.items():
        assert_float32_close(fused_grads[name], grad, terms * 2 * x.shape[1], err_msg=name)


def test_eval_forward_with_the_fused_attention_kernel(kernels):
    block = build("eva02_ti")
    rope = rope_tables("eva02_ti")
    x = paddle.to_tensor(np.random.default_rng(1).standard_normal([3, GRID * GRID + 1, 64]).astype("float32"))
    block.eval()
    with paddle.no_grad():
        fused = block(x, rope).numpy()
        with switches.FUSED_CPU_OPS.overridden(False):
            plain = block(x, rope).numpy()
    assert_float32_close(fused, plain, 4 * 170)


def test_drop_path_in_training_keeps_the_residual_outside(kernels):
    """Stochastic depth scales the branch per sample before the residual add: that block adds it separately."""
    block = build("eva02_ti", drop_path=0.5)
    rope = rope_tables("eva02_ti")
    x = np.random.default_rng(2).standard_normal([4, GRID * GRID + 1, 64]).astype("float32")
    paddle.seed(5)
    fused = run(block, x, rope, fused=True)[0]
    paddle.seed(5)
    plain = run(block, x, rope, fused=False)[0]
    assert_float32_close(fused, plain, 4 * 170)


def test_kernels_serve_only_eager_float32_cpu_with_the_switch_on(monkeypatch):
    x = paddle.ones([2, 3])
    on = cpu_kernels._ops() is not None
    assert cpu_kernels.enabled_for(x) is on
    assert not cpu_kernels.enabled_for(x.astype("float64"))
    switches.FUSED_CPU_OPS.set(False)
    assert not cpu_kernels.enabled_for(x)
    switches.FUSED_CPU_OPS.set(None)
    monkeypatch.setenv(switches.FUSED_CPU_OPS.disable_env, "1")  # the default, read at each call
    assert not cpu_kernels.enabled_for(x)
    switches.FUSED_CPU_OPS.set(True)  # explicit beats the environment
    assert cpu_kernels.enabled_for(x) is on


def test_plain_fallbacks_are_the_paddle_expressions():
    rng = np.random.default_rng(3)
    x, w, b, r = (paddle.to_tensor(rng.standard_normal(s).astype("float32")) for s in ([5, 4], [4, 6], [6], [5, 6]))
    with switches.FUSED_CPU_OPS.overridden(False):
        np.testing.assert_array_equal(cpu_kernels.linear(x, w, b, r).numpy(),
                                      (paddle.nn.functional.linear(x, w, b) + r).numpy())
        h = paddle.to_tensor(rng.standard_normal([5, 8]).astype("float32"))
        np.testing.assert_array_equal(cpu_kernels.swiglu(h).numpy(),
                                      (paddle.nn.functional.swish(h[:, :4]) * h[:, 4:]).numpy())
        qkv = paddle.zeros([1, 2, 3, 1, 4])
        assert cpu_kernels.rope_qkv_split(qkv, paddle.ones([2, 4]), paddle.zeros([2, 4]), 1.0) is None


def test_exported_programs_hold_no_custom_op(tmp_path):
    """Static graphs take the plain expressions, so exports load in Paddle Inference without this library."""
    from paddle.static import InputSpec

    block = build("eva02_ti")
    block.eval()
    rope = rope_tables("eva02_ti")

    class WithTables(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x, rope)

    static = paddle.jit.to_static(WithTables(), input_spec=[InputSpec([None, GRID * GRID + 1, 64], "float32")],
                                  full_graph=True)
    program = static.forward.concrete_program.main_program
    op_types = {op.name() if hasattr(op, "name") else op.type for op in program.global_block().ops}
    assert not any(name.startswith(("fused_linear", "fused_swiglu", "fused_rope")) or "custom" in name
                   for name in op_types), sorted(op_types)
    assert any("matmul" in name for name in op_types)
