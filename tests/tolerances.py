"""Comparison tolerances derived from float32 arithmetic, so that no test depends on one CPU's rounding.

Two correct float32 computations of the same sum in different orders (another kernel, another thread split,
another SIMD width: AVX2 vs AVX-512, one process vs two) differ by up to about terms * eps * (the magnitude of the
summed products). The products' magnitude is bounded here by the largest value of the tensor compared: an
element near zero that is a sum of large terms keeps an absolute error of the tensor's scale, so a purely
element-relative tolerance would be wrong for it.
"""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


def float32_tolerance(expected, terms: int, floor: float = 0.0) -> dict:
    """`assert_allclose` keyword arguments for values that are sums of about `terms` float32 products. `floor`
    bounds the scale from below, for tensors that are (nearly) zero while their terms are not (e.g. the gradient
    of a key bias, which softmax cancels exactly): pass the magnitude of the quantities they are computed from."""
    scale = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
    return {"rtol": terms * EPS32, "atol": terms * EPS32 * (max(scale, floor) or 1.0)}


def assert_float32_close(actual, expected, terms: int, floor: float = 0.0, err_msg: str = "") -> None:
    np.testing.assert_allclose(actual, expected, err_msg=err_msg, **float32_tolerance(expected, terms, floor))
