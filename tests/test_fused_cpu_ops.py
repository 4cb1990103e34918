"""The fused CPU ops of external_ops/ (linear through oneDNN, SwiGLU, RoPE on packed qkv): forward and every
gradient against the plain Paddle expressions and float64 NumPy references, the fallbacks, the switch, the
oneDNN declarations against oneDNN's own headers, and a missing or wrong oneDNN library.

Tolerances come from float32 accumulation (tests/tolerances.py): a GEMM output sums K products, dx sums N,
dW and dbias sum M, so none of them depends on the SIMD width or thread split (AVX-512 vs AVX2:
`MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2` gives AVX2 numerics on an AVX-512 machine, and
`test_avx2_numerics_in_a_subprocess` runs a check that way). `make test` sets PADDLEMIX_EVA_REQUIRE_OPS=1, so the
tests fail rather than skip when the extension (or, for the linear op, oneDNN) is missing.
"""
import importlib
import itertools
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import paddle
import pytest

from tolerances import assert_float32_close

REQUIRE = os.environ.get("PADDLEMIX_EVA_REQUIRE_OPS") == "1"

try:
    import paddlemix_eva_ops as fused
    from paddlemix_eva_ops import plain
    from paddlemix_eva_ops.onednn import gemm_cache_size, gemm_implementation
except ImportError as err:  # pragma: no cover - depends on the environment
    if REQUIRE:
        raise ImportError(f"the fused CPU ops are required here but not importable ({err}); run `make ops`")
    pytest.skip(f"fused CPU ops not built ({err}); `make ops` builds them", allow_module_level=True)

# the modules themselves (the package re-exports functions of the same names)
linear_module = importlib.import_module("paddlemix_eva_ops.linear")
elementwise_module = importlib.import_module("paddlemix_eva_ops.elementwise")

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "external_ops", "csrc",
                      "onednn_api.h")


@pytest.fixture
def onednn():
    """The linear op's tests need oneDNN: skipped without it, failed without it under PADDLEMIX_EVA_REQUIRE_OPS=1."""
    info = fused.onednn_info()
    if not info.available:
        if REQUIRE:
            pytest.fail(f"oneDNN is required here but unavailable: {info.description}")
        pytest.skip(f"oneDNN unavailable: {info.description}")
    return info


@pytest.fixture(autouse=True)
def _switch_follows_environment():
    fused.set_fused_cpu_ops_enabled(None)
    yield
    fused.set_fused_cpu_ops_enabled(None)


def tensor(array: np.ndarray, grad: bool = True, dtype: str = "float32") -> paddle.Tensor:
    t = paddle.to_tensor(array.astype(np.float32)).astype(dtype)
    t.stop_gradient = not grad
    return t


def run(fn, inputs, output_grads):
    """Outputs and input gradients (None where no gradient arrived) as float64 arrays."""
    outs = fn(*inputs)
    outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    paddle.autograd.backward(outs, [paddle.to_tensor(g) for g in output_grads])
    as64 = lambda t: None if t is None else t.astype("float32").numpy().astype(np.float64)  # noqa: E731
    grads = [as64(t.grad) if not t.stop_gradient else None for t in inputs]
    for t in inputs:
        t.clear_gradient()
    return [as64(o) for o in outs], grads


def spy(monkeypatch, module, name):
    """Counts the calls of a compiled op as the wrappers see it."""
    calls = []
    original = getattr(module, name)

    def counted(*args):
        calls.append(name)
        return original(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


# ------------------------------------------------------------------------------------------------- linear
LINEAR_SHAPES = [  # (leading dims of x, K, N)
    ([1], 17, 33),
    ([5], 1, 8),
    ([4], 17, 33),
    ([2, 3], 64, 7),
    ([2, 3, 4], 17, 33),
    ([8, 257], 192, 576),
]


def linear_inputs(lead, k, n, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(lead + [k]), rng.standard_normal([k, n]) / np.sqrt(k), rng.standard_normal(n),
            rng.standard_normal(lead + [n]), rng.standard_normal(lead + [n]))


def linear_reference(x, w, b, r, dy):
    """out, dx, dw, db, dr in float64."""
    x, w, dy = (a.astype(np.float32).astype(np.float64) for a in (x, w, dy))
    out = x @ w
    if b is not None:
        out = out + b.astype(np.float32)
    if r is not None:
        out = out + r.astype(np.float32)
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    return out, dy @ w.T, x2.T @ dy2, dy2.sum(0), dy


@pytest.mark.parametrize("lead,k,n", LINEAR_SHAPES)
@pytest.mark.parametrize("with_bias,with_residual", list(itertools.product([False, True], repeat=2)))
def test_linear_matches_plain_and_float64(onednn, monkeypatch, lead, k, n, with_bias, with_residual):
    xa, wa, ba, ra, dya = linear_inputs(lead, k, n, seed=k * n + len(lead))
    ba = ba if with_bias else None
    ra = ra if with_residual else None
    inputs = [tensor(a) for a in (xa, wa, ba, ra) if a is not None]

    def call(fn):
        def apply(*ts):
            x, w, *rest = ts
            b = rest.pop(0) if with_bias else None
            r = rest.pop(0) if with_residual else None
            return fn(x, w, b, r)
        return apply

    calls = spy(monkeypatch, linear_module, "fused_linear" + "_bias" * with_bias + "_residual" * with_residual)
    (got,), got_grads = run(call(fused.linear), inputs, [dya.astype(np.float32)])
    assert calls, "the fused op did not run"
    (want,), want_grads = run(call(plain.plain_linear), inputs, [dya.astype(np.float32)])
    exact = linear_reference(xa, wa, ba, ra, dya)
    m = int(np.prod(lead))
    names = ["out", "dx", "dweight"] + ["dbias"] * with_bias + ["dresidual"] * with_residual
    exact_by_name = dict(zip(["out", "dx", "dweight", "dbias", "dresidual"], exact))
    terms = {"out": k + 2, "dx": n, "dweight": m, "dbias": m, "dresidual": 1}
    for name, g, p in zip(names, [got] + got_grads, [want] + want_grads):
        e = exact_by_name[name]
        assert g.shape == e.shape, name
        assert_float32_close(g, p, 2 * terms[name], err_msg=f"{name} vs paddle")
        assert_float32_close(g, e, terms[name], err_msg=f"{name} vs float64")


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=4)))
def test_linear_gradients_follow_stop_gradient(onednn, flags):
    """Each combination of trainable inputs gets exactly its gradients, and they are right."""
    xa, wa, ba, ra, dya = linear_inputs([3, 5], 24, 40, seed=1)
    inputs = [tensor(a, grad=g) for a, g in zip((xa, wa, ba, ra), flags)]
    if not any(flags):
        out = fused.linear(*inputs)
        assert out.stop_gradient
        return
    _, got = run(fused.linear, inputs, [dya.astype(np.float32)])
    _, want = run(plain.plain_linear, inputs, [dya.astype(np.float32)])
    for name, g, p, flag in zip(("dx", "dweight", "dbias", "dresidual"), got, want, flags):
        assert (g is not None) == flag, name
        if flag:
            assert_float32_close(g, p, 2 * 15, err_msg=name)


def test_linear_in_a_chain(onednn):
    """A 2-layer MLP with residuals, one input feeding both the GEMM and the residual: same loss gradient."""
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal([6, 32])
    params = [rng.standard_normal(s) / 4 for s in ([32, 32], [32], [32, 32], [32])]
    results = []
    for fn in (fused.linear, plain.plain_linear):
        x = tensor(x0)
        w1, b1, w2, b2 = (tensor(p) for p in params)
        h = fn(x, w1, b1, x)  # x is both the GEMM input and the residual
        y = fn(paddle.nn.functional.gelu(h), w2, b2, h)
        (y * y).sum().backward()
        results.append([t.numpy() for t in (y, x.grad, w1.grad, b1.grad, w2.grad, b2.grad)])
    for got, want in zip(*results):
        assert_float32_close(got, want, 200)


def test_no_grad_mode_records_no_backward(onednn):
    """Under paddle.no_grad() the outputs are constants, as the plain expressions' are (custom ops alone would
    record a backward node there)."""
    x, w, b = tensor(np.ones([4, 6])), tensor(np.ones([6, 6])), tensor(np.ones(6))
    qa, cos, sin = rope_inputs(1, 3, 2, 4, False)
    qkv = tensor(qa)
    with paddle.no_grad():
        outs = [fused.linear(x, w, b, x), fused.swiglu(x), fused.rope_qkv(qkv, cos, sin),
                *fused.rope_qkv_split(qkv, cos, sin)]
    assert all(out.stop_gradient for out in outs)


def test_linear_caches_primitives_by_shape(onednn):
    x, w = tensor(np.ones([7, 11]), grad=False), tensor(np.ones([11, 13]), grad=False)
    fused.linear(x, w)
    before = gemm_cache_size()
    for _ in range(3):
        fused.linear(x, w)
    assert gemm_cache_size() == before
    fused.linear(tensor(np.ones([8, 11]), grad=False), w)
    assert gemm_cache_size() == before + 1
    assert gemm_implementation(7, 11, 13)  # an implementation name such as brg_matmul:avx512_core


def test_linear_follows_the_thread_count(onednn):
    """oneDNN fixes a primitive's thread split at creation, so the cache keys on the thread count too: a GEMM
    created under 1 thread must not keep running on 1 after set_cpu_threads(2)."""
    from paddlemix_eva.runtime import set_cpu_threads

    rng = np.random.default_rng(10)
    x, w = tensor(rng.standard_normal([64, 48]), grad=False), tensor(rng.standard_normal([48, 40]), grad=False)
    set_cpu_threads(1)
    one = fused.linear(x, w).numpy()
    before = gemm_cache_size()
    set_cpu_threads(2)
    two = fused.linear(x, w).numpy()
    assert gemm_cache_size() == before + 1
    assert_float32_close(two, one, 48)


def test_linear_zero_sized_inner_dimension(onednn):
    x, w, b = tensor(np.zeros([3, 0])), tensor(np.zeros([0, 4])), tensor(np.arange(4.0))
    out = fused.linear(x, w, b)
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(np.arange(4.0), (3, 4)))
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy().shape, [0, 4])
    np.testing.assert_array_equal(b.grad.numpy(), np.full(4, 3.0))


# --------------------------------------------------------------------------------------------- SwiGLU
SWIGLU_SHAPES = [[1, 2], [3, 34], [2, 3, 4, 66], [8, 257, 1024]]


def swiglu_reference(h, dy):
    h, dy = h.astype(np.float64), dy.astype(np.float64)
    a, b = np.split(h, 2, axis=-1)
    s = 1.0 / (1.0 + np.exp(-a))
    return a * s * b, np.concatenate([dy * b * (s + a * s * (1 - s)), dy * a * s], axis=-1)


@pytest.mark.parametrize("shape", SWIGLU_SHAPES)
def test_swiglu_matches_plain_and_float64(monkeypatch, shape):
    rng = np.random.default_rng(len(shape))
    ha = (rng.standard_normal(shape) * 4).astype(np.float32)
    ha.reshape(-1)[:8] = [-120.0, -90.0, -87.5, -30.0, 30.0, 88.5, 95.0, 0.0][: min(8, ha.size)]  # exp clamps
    dya = rng.standard_normal(shape[:-1] + [shape[-1] // 2]).astype(np.float32)
    calls = spy(monkeypatch, elementwise_module, "fused_swiglu")
    (got,), (dgot,) = run(fused.swiglu, [tensor(ha)], [dya])
    assert calls
    (want,), (dwant,) = run(plain.plain_swiglu, [tensor(ha)], [dya])
    exact, dexact = swiglu_reference(ha, dya)
    assert_float32_close(got, want, 8, err_msg="out vs paddle")
    finite = np.isfinite(dwant)  # Paddle's silu gradient overflows to NaN for gates below about -88; ours does not
    assert_float32_close(dgot[finite], dwant[finite], 8, floor=np.abs(dwant[finite]).max(), err_msg="dh vs paddle")
    # floor 1: far below the inputs' scale, silu's exp clamp leaves ~1e-35 absolute errors where exact is ~1e-49
    assert_float32_close(got, exact, 8, floor=1.0, err_msg="out vs float64")
    assert_float32_close(dgot, dexact, 8, floor=1.0, err_msg="dh vs float64")
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(dgot))


# -------------------------------------------------------------------------------------------- softmax
def softmax_reference(x, dy):
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    return y, y * (dy - (dy * y).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("shape", [[7], [3, 5, 257], [2, 3, 50, 50], [4, 1]])
def test_softmax_matches_plain_and_float64(monkeypatch, shape):
    rng = np.random.default_rng(len(shape))
    xa = (rng.standard_normal(shape) * 6).astype(np.float32)
    xa.reshape(-1)[:3] = [-1e4, 80.0, -95.0][: min(3, xa.size)]  # far below the peak: exp underflows to ~0
    dya = rng.standard_normal(shape).astype(np.float32)
    calls = spy(monkeypatch, elementwise_module, "fused_softmax")
    (got,), (dgot,) = run(fused.softmax, [tensor(xa)], [dya])
    assert calls
    (want,), (dwant,) = run(plain.plain_softmax, [tensor(xa)], [dya])
    exact, dexact = softmax_reference(xa, dya)
    width = shape[-1]
    assert_float32_close(got, want, 2 * width, floor=1.0, err_msg="out vs paddle")
    assert_float32_close(dgot, dwant, 2 * width, floor=np.abs(dya).max(), err_msg="dx vs paddle")
    assert_float32_close(got, exact, 2 * width, floor=1.0, err_msg="out vs float64")
    assert_float32_close(dgot, dexact, 2 * width, floor=np.abs(dya).max(), err_msg="dx vs float64")
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=0, atol=width * 1.2e-7)


def test_softmax_of_other_dtypes_and_strided_inputs():
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal([6, 9]))  # float64: the plain kernel
    np.testing.assert_array_equal(fused.softmax(x).numpy(), plain.plain_softmax(x).numpy())
    base = paddle.to_tensor(np.random.default_rng(1).standard_normal([9, 6]).astype(np.float32))
    strided = base.transpose([1, 0])
    assert_float32_close(fused.softmax(strided).numpy(), plain.plain_softmax(strided).numpy(), 20, floor=1.0)
    assert not fused.supports_softmax(x) and fused.supports_softmax(base)


# ----------------------------------------------------------------------------------------------- RoPE
def eva_tables(grid: int, dim: int):
    """cos / sin [1 + grid^2, dim] of EVA-02's 2D RoPE, cls row first."""
    from paddlemix_eva.layers.rope import VisionRotaryEmbedding

    rope = VisionRotaryEmbedding(dim, (grid, grid))
    return rope.freqs_cos, rope.freqs_sin


def random_tables(tokens: int, dim: int, seed: int):
    angles = np.random.default_rng(seed).uniform(-4, 4, [tokens, dim])
    angles[0] = 0.0  # the cls row: identity
    return tensor(np.cos(angles), grad=False), tensor(np.sin(angles), grad=False)


def rope_reference(x, cos, sin, transpose=False):
    """Interleaved-pair rotation of x [..., N, heads, d] by [N, d] tables (or its transpose), float64:
    out[2i] = x[2i] c[2i] - x[2i+1] s[2i], out[2i+1] = x[2i+1] c[2i+1] + x[2i] s[2i+1]."""
    x = x.astype(np.float64)
    c, s = cos[:, None, :].astype(np.float64), sin[:, None, :].astype(np.float64)
    out = np.empty_like(x)
    x0, x1, c0, c1, s0, s1 = x[..., 0::2], x[..., 1::2], c[..., 0::2], c[..., 1::2], s[..., 0::2], s[..., 1::2]
    if transpose:
        out[..., 0::2], out[..., 1::2] = x0 * c0 + x1 * s1, x1 * c1 - x0 * s0
    else:
        out[..., 0::2], out[..., 1::2] = x0 * c0 - x1 * s0, x1 * c1 + x0 * s1
    return out


ROPE_CASES = [  # (batch, grid or tokens, heads, dim, eva tables)
    (1, 1, 1, 2, False),
    (2, 5, 3, 6, False),
    (3, 4, 3, 64, True),
    (8, 16, 3, 64, True),
    (2, 24, 6, 64, True),
]


def rope_inputs(batch, size, heads, dim, eva, seed=0):
    cos, sin = eva_tables(size, dim) if eva else random_tables(size, dim, seed)
    tokens = cos.shape[0]
    rng = np.random.default_rng(seed)
    return rng.standard_normal([batch, tokens, 3, heads, dim]).astype(np.float32), cos, sin


@pytest.mark.parametrize("batch,size,heads,dim,eva", ROPE_CASES)
def test_rope_qkv_matches_layers_plain_and_float64(monkeypatch, batch, size, heads, dim, eva):
    from paddlemix_eva.layers.rope import apply_rope_elementwise

    qa, cos, sin = rope_inputs(batch, size, heads, dim, eva)
    dya = np.random.default_rng(1).standard_normal(qa.shape).astype(np.float32)
    calls = spy(monkeypatch, elementwise_module, "fused_rope_qkv")
    (got,), (dgot,) = run(lambda t: fused.rope_qkv(t, cos, sin), [tensor(qa)], [dya])
    assert calls
    (want,), (dwant,) = run(lambda t: plain.plain_rope_qkv(t, cos, sin), [tensor(qa)], [dya])
    c, s = cos.numpy(), sin.numpy()
    for slot in (0, 1):  # the library's own expression, slot by slot
        layers = apply_rope_elementwise(tensor(qa[:, :, slot], grad=False), cos.unsqueeze(1), sin.unsqueeze(1))
        assert_float32_close(got[:, :, slot], layers.numpy(), 2, err_msg=f"slot {slot} vs layers")
        assert_float32_close(got[:, :, slot], rope_reference(qa[:, :, slot], c, s), 2)
        assert_float32_close(dgot[:, :, slot], rope_reference(dya[:, :, slot], c, s, transpose=True), 2)
    np.testing.assert_array_equal(got[:, :, 2], qa[:, :, 2])  # v passes through
    np.testing.assert_array_equal(dgot[:, :, 2], dya[:, :, 2])
    np.testing.assert_array_equal(got[:, 0, :2], qa[:, 0, :2])  # the cls row is not rotated
    assert_float32_close(got, want, 2, err_msg="out vs paddle")
    assert_float32_close(dgot, dwant, 2, err_msg="dqkv vs paddle")


@pytest.mark.parametrize("batch,size,heads,dim,eva", ROPE_CASES)
@pytest.mark.parametrize("q_scale", [1.0, 0.125, 0.3])
def test_rope_qkv_split_matches_plain(monkeypatch, batch, size, heads, dim, eva, q_scale):
    qa, cos, sin = rope_inputs(batch, size, heads, dim, eva, seed=2)
    tokens = qa.shape[1]
    rng = np.random.default_rng(3)
    dys = [rng.standard_normal([batch, heads, tokens, dim]).astype(np.float32) for _ in range(3)]
    calls = spy(monkeypatch, elementwise_module, "fused_rope_qkv_split")
    got, (dgot,) = run(lambda t: fused.rope_qkv_split(t, cos, sin, q_scale), [tensor(qa)], dys)
    assert calls
    want, (dwant,) = run(lambda t: plain.plain_rope_qkv_split(t, cos, sin, q_scale), [tensor(qa)], dys)
    for name, g, p in zip("qkv", got, want):
        assert g.shape == (batch, heads, tokens, dim)
        assert_float32_close(g, p, 3, err_msg=name)
    assert_float32_close(dgot, dwant, 3, err_msg="dqkv")


@pytest.mark.parametrize("used", [(0,), (1,), (2,), (0, 2)])
def test_rope_qkv_split_with_unused_outputs(used):
    """Outputs that get no gradient count as zero in the backward."""
    qa, cos, sin = rope_inputs(2, 4, 3, 8, False, seed=5)
    dys = [np.random.default_rng(i).standard_normal([2, 3, qa.shape[1], 8]).astype(np.float32) for i in used]

    def pick(fn):
        return lambda t: [fn(t, cos, sin)[i] for i in used]

    _, (dgot,) = run(pick(fused.rope_qkv_split), [tensor(qa)], dys)
    _, (dwant,) = run(pick(plain.plain_rope_qkv_split), [tensor(qa)], dys)
    assert_float32_close(dgot, dwant, 3)


# ------------------------------------------------------------------------------------------ fallbacks
@pytest.fixture
def stride_kernels():
    """Paddle's default view semantics (training entry points switch them off process-wide)."""
    before = paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]
    paddle.set_flags({"FLAGS_use_stride_kernel": True})
    yield
    paddle.set_flags({"FLAGS_use_stride_kernel": before})


def test_non_contiguous_inputs_take_the_op_with_the_plain_result(onednn, stride_kernels, monkeypatch):
    rng = np.random.default_rng(6)
    base = tensor(rng.standard_normal([6, 16, 12]), grad=False)
    x = base.transpose([1, 0, 2])  # [16, 6, 12] view
    w = tensor(rng.standard_normal([10, 12]), grad=False).t()  # [12, 10] view
    assert not x.is_contiguous() and not w.is_contiguous()
    calls = spy(monkeypatch, linear_module, "fused_linear")
    assert_float32_close(fused.linear(x, w).numpy(), plain.plain_linear(x.contiguous(), w.contiguous()).numpy(), 24)
    assert calls
    h = tensor(rng.standard_normal([5, 4, 8]), grad=False).transpose([1, 0, 2])
    assert_float32_close(fused.swiglu(h).numpy(), plain.plain_swiglu(h.contiguous()).numpy(), 8)
    qa, cos, sin = rope_inputs(2, 3, 2, 4, False)
    qkv = tensor(np.ascontiguousarray(qa.transpose(1, 0, 2, 3, 4)), grad=False).transpose([1, 0, 2, 3, 4])
    assert not qkv.is_contiguous()
    assert_float32_close(fused.rope_qkv(qkv, cos, sin).numpy(), plain.plain_rope_qkv(qkv, cos, sin).numpy(), 2)
    for g, p in zip(fused.rope_qkv_split(qkv, cos, sin), plain.plain_rope_qkv_split(qkv, cos, sin)):
        assert_float32_close(g.numpy(), p.numpy(), 2)


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_other_dtypes_give_the_plain_result(monkeypatch, dtype):
    rng = np.random.default_rng(7)
    x, w, b = (tensor(rng.standard_normal(s), dtype=dtype) for s in ([4, 8], [8, 6], [6]))
    h = tensor(rng.standard_normal([3, 10]), dtype=dtype)
    qa, cos, sin = rope_inputs(1, 3, 2, 4, False)
    qkv = tensor(qa, dtype=dtype)
    calls = [spy(monkeypatch, linear_module, "fused_linear_bias"), spy(monkeypatch, elementwise_module, "fused_swiglu"),
             spy(monkeypatch, elementwise_module, "fused_rope_qkv")]
    assert not fused.supports_linear(x, w, b) and not fused.supports_swiglu(h)
    assert not fused.supports_rope_qkv(qkv, cos, sin)
    for got, want in ((lambda: fused.linear(x, w, b), lambda: plain.plain_linear(x, w, b)),
                      (lambda: fused.swiglu(h), lambda: plain.plain_swiglu(h)),
                      (lambda: fused.rope_qkv(qkv, cos, sin), lambda: plain.plain_rope_qkv(qkv, cos, sin))):
        assert_same_outcome(got, want)
    assert not any(calls)


def assert_same_outcome(fn, plain_fn):
    """The same values, or the same error where Paddle has no kernel (e.g. no bfloat16 matmul on CPU)."""
    try:
        want = plain_fn().astype("float32").numpy()
    except Exception as err:  # noqa: BLE001 - whatever Paddle raises, the wrapper must raise it too
        with pytest.raises(type(err)):
            fn()
        return
    np.testing.assert_array_equal(fn().astype("float32").numpy(), want)


def test_static_graphs_hold_the_plain_expressions():
    """`to_static` programs (exports) must not depend on this extension."""
    rng = np.random.default_rng(8)
    w, b = tensor(rng.standard_normal([8, 6]), grad=False), tensor(rng.standard_normal(6), grad=False)
    qa, cos, sin = rope_inputs(1, 3, 2, 4, False)

    def model(x, r, h, qkv):
        return fused.linear(x, w, b, r), fused.swiglu(h), fused.rope_qkv(qkv, cos, sin), \
            fused.rope_qkv_split(qkv, cos, sin, 0.5)[0]

    spec = [paddle.static.InputSpec(s, "float32") for s in ([None, 8], [None, 6], [None, 10], list(qa.shape))]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    inputs = [tensor(rng.standard_normal(s), grad=False) for s in ([3, 8], [3, 6], [3, 10])] + [tensor(qa, False)]
    for got, want in zip(static(*inputs), model(*inputs)):
        assert_float32_close(got.numpy(), want.numpy(), 16)
    program = static.concrete_program.main_program
    names = {op.name() for op in program.global_block().ops}
    assert not any("fused_" in name for name in names), names


def test_switches(monkeypatch):
    rng = np.random.default_rng(9)
    h = tensor(rng.standard_normal([3, 10]), grad=False)
    calls = spy(monkeypatch, elementwise_module, "fused_swiglu")
    fused.swiglu(h)
    assert len(calls) == 1 and fused.fused_cpu_ops_enabled()
    fused.swiglu(h, use_fused=False)
    assert len(calls) == 1
    monkeypatch.setenv(fused.DISABLE_FUSED_CPU_OPS_ENV, "1")
    assert not fused.fused_cpu_ops_enabled()
    fused.swiglu(h)
    assert len(calls) == 1
    fused.swiglu(h, use_fused=True)  # the call's choice beats the environment
    assert len(calls) == 2
    monkeypatch.delenv(fused.DISABLE_FUSED_CPU_OPS_ENV)
    fused.set_fused_cpu_ops_enabled(False)
    fused.swiglu(h)
    assert len(calls) == 2
    fused.set_fused_cpu_ops_enabled(None)
    fused.swiglu(h)
    assert len(calls) == 3


def test_tables_that_need_gradients_take_the_plain_path():
    qa, cos, sin = rope_inputs(1, 3, 2, 4, False)
    cos = cos.detach()
    cos.stop_gradient = False
    assert not fused.supports_rope_qkv(tensor(qa), cos, sin)
    out = fused.rope_qkv(tensor(qa), cos, sin)
    out.sum().backward()
    assert cos.grad is not None


def test_wrong_shapes_raise_the_plain_errors():
    with pytest.raises(ValueError):
        fused.linear(paddle.ones([3, 5]), paddle.ones([4, 6]))
    assert not fused.supports_linear(paddle.ones([3, 5]), paddle.ones([5, 6]), paddle.ones([5]))
    assert not fused.supports_swiglu(paddle.ones([3, 5]))


# --------------------------------------------------------------------------------- oneDNN declarations
def _header_constants(text: str) -> dict:
    return {name: int(value.rstrip("uU"), 0) for name, value in
            re.findall(r"constexpr (?:int|unsigned) (\w+) = (0x[0-9a-fA-F]+[uU]?|\d+[uU]?);", text)}


def _onednn_header_values(include_dir: str) -> dict:
    """#define NAME number and enum entries (explicit or implicit values) of oneDNN's C headers."""
    values = {}
    for name in ("dnnl_types.h", "dnnl_common_types.h", "dnnl_config.h"):
        path = os.path.join(include_dir, name)
        if not os.path.exists(path):
            continue
        text = re.sub(r"//[^\n]*|/\*.*?\*/", "", open(path).read(), flags=re.S)
        for name_, value in re.findall(r"#define (\w+) (0x[0-9a-fA-F]+[uU]?|\d+[uU]?)\s", text):
            values[name_] = int(value.rstrip("uU"), 0)
        for name_, alias in re.findall(r"#define (\w+) ([A-Za-z_]\w*)\s", text):  # e.g. DNNL_ARG_SRC DNNL_ARG_SRC_0
            if alias in values:
                values[name_] = values[alias]
        for body in re.findall(r"typedef enum\s*\w*\s*\{(.*?)\}", text, flags=re.S):
            current = -1
            for entry in (e.strip() for e in body.split(",")):
                match = re.fullmatch(r"(\w+)(?:\s*=\s*(\w+))?", entry)
                if not match:
                    continue
                name_, value = match.groups()
                if value is None:
                    current += 1
                elif re.fullmatch(r"0x[0-9a-fA-F]+[uU]?|\d+[uU]?", value):
                    current = int(value.rstrip("uU"), 0)
                elif value in values:
                    current = values[value]
                else:
                    continue
                values[name_] = current
    return values


def test_onednn_constants_match_onednn_headers():
    """Our declarations against oneDNN's own headers (torch ships them; oneDNN keeps its C ABI within v3)."""
    torch = pytest.importorskip("torch")
    include = os.path.join(os.path.dirname(torch.__file__), "include", "oneapi", "dnnl")
    if not os.path.exists(os.path.join(include, "dnnl_types.h")):
        pytest.skip("this torch ships no oneDNN headers")
    ours = _header_constants(open(HEADER).read())
    theirs = _onednn_header_values(include)
    assert len(ours) > 30
    assert theirs.get("DNNL_VERSION_MAJOR", 3) == 3
    mismatched = {name: (value, theirs.get(name)) for name, value in ours.items() if theirs.get(name) != value}
    assert not mismatched, f"(ours, oneDNN's): {mismatched}"
    assert theirs["DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE"] * 1 == ours["DNNL_ARG_ATTR_MULTIPLE_POST_OP_BASE"]


def test_onednn_info_names_version_runtime_and_isa(onednn):
    assert re.match(r"oneDNN 3\.\d+\.\d+ \(OpenMP runtime\), ISA \w+", onednn.description), onednn.description


# ------------------------------------------------------------------------------- subprocess scenarios
def _run_python(code: str, **env) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


_FALLBACK_CHECK = """
    import logging, sys, numpy as np
    import paddlemix_eva, paddle
    logging.basicConfig(level=logging.INFO, format="LOG %(message)s", stream=sys.stdout, force=True)
    import paddlemix_eva_ops as fused
    from paddlemix_eva_ops import plain
    info = fused.onednn_info()
    print("AVAILABLE", info.available, info.description)
    x, w, b, r = (paddle.randn(s) for s in ([4, 8], [8, 6], [6], [4, 6]))
    for t in (x, w, b, r):
        t.stop_gradient = False
    assert not fused.supports_linear(x, w, b, r)
    for _ in range(2):
        np.testing.assert_array_equal(fused.linear(x, w, b, r).numpy(), plain.plain_linear(x, w, b, r).numpy())
    fused.linear(x, w, b, r).sum().backward()
    assert w.grad is not None
    print("OK")
"""


@pytest.mark.parametrize("library,reason", [("/nonexistent/libdnnl.so.3", "cannot load"),
                                            ("libm.so.6", "lacks dnnl_")])
def test_missing_or_wrong_onednn_library_falls_back_to_f_linear(library, reason):
    out = _run_python(_FALLBACK_CHECK, PADDLEMIX_EVA_ONEDNN_LIBRARY=library)
    assert "AVAILABLE False" in out and reason in out and out.rstrip().endswith("OK"), out
    assert out.count("fused linear: no fused CPU kernel") == 1, out  # said once, though linear ran three times


def test_avx2_numerics_in_a_subprocess(onednn):
    """oneDNN capped at AVX2 (and MKL, which the plain reference uses) still meets the float32 tolerances."""
    out = _run_python("""
        import numpy as np
        import paddlemix_eva, paddle
        import paddlemix_eva_ops as fused
        from paddlemix_eva_ops.onednn import gemm_implementation
        print(fused.onednn_info().description)
        print(gemm_implementation(257, 192, 576, True))
        rng = np.random.default_rng(0)
        x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ([2, 257, 192], [192, 576], [576]))
        got = fused.linear(*(paddle.to_tensor(a) for a in (x, w, b))).numpy()
        want = x.astype(np.float64) @ w + b
        err = np.abs(got - want).max() / (np.abs(want).max() * 192 * 1.2e-7)
        print("RELATIVE", err)
    """, MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2")
    assert "ISA avx2" in out, out
    assert "avx512" not in out.splitlines()[1], out
    assert float(out.split("RELATIVE")[1]) <= 1.0, out
