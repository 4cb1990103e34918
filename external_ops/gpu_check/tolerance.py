"""The tolerance rule: how far the kernels' outputs may be from the float64 reference, per element.

Derived from the machine epsilon of each dtype and the length of the reductions behind each output (first order
in the rounding errors, absolute values throughout), so a correct float32-accumulating LayerNorm passes whatever
its summation order (short of a probability of about 1e-21 per element), and the bound shrinks where the
arithmetic is exact (constant rows: 1/std = 1/sqrt(eps) to 4 float32 eps).

Notation (n = hidden, R = rows; d = x - mean, r = 1/std, xh = d * r, g = dy * w, all in float64):

    eps_o    machine epsilon of the dtype an output is stored in (float16 2^-10, bfloat16 2^-7, float32 2^-23,
             float64 2^-52); mean and 1/std are always stored as float32
    tiny_o   its smallest subnormal (float16 2^-24, bfloat16 2^-133, float32 2^-149, float64 2^-1074): the
             absolute rounding error of a result that underflows (a float16 y or dx near zero)
    e        machine epsilon of the accumulation: float32, float64 for float64 x; always float32 for dscale/dbias,
             whose column reduction goes through a float32 workspace
    G(m)     = min(m, 10 * sqrt(m)) * e, the error of any length-m summation relative to the sum of |terms|:
             m*u is the deterministic bound (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
             §4.2), 10*sqrt(m)*u the probabilistic one with lambda = 10 (Higham & Mary, SIAM J. Sci. Comput.
             41(5), 2019: it fails with probability < 2m*exp(-50) = m*4e-22), with e = 2u as margin

    per element:  |got - ref| <= eps_o * |ref| + tiny_o + A     (rounding to the output dtype, with the
                                                                  margin 2 of eps = 2u, + the computation's A)

    A(mean)   = G(n) * mean|x|
    A(rstd)   = r^3 / 2 * G(n) * mean((|x| + |d|) * |d|) + 3e * r      (variance terms d^2, d from a rounded mean;
                                                                       then + eps, sqrt, divide)
    A(y)      = |w| * (r * A(mean) + |d| * A(rstd)) + 4e * (|xh * w| + |b|)
    backward, from the forward's float32 statistics:
    Dm, Dr    = A(mean) + eps32 * |mean|,  A(rstd) + eps32 * r
    Dxh       = r * Dm + |d| * Dr + 2e * |xh|
    Dc1       = (G(n) + 2e) * mean|g|,  c1 = mean(g)
    Dc2       = mean(|g| * Dxh) + (G(n) + 3e) * mean|g * xh|,  c2 = mean(g * xh)
    A(dx)     = (Dr / r + e) * |dx| + r * (Dc1 + |c2| * Dxh + |xh| * Dc2 + 4e * (|g| + |c1| + |xh * c2|))
    A(dscale) = sum_rows(|dy| * Dxh) + (G(R) + 2e) * sum_rows|dy * xh|
    A(dbias)  = (G(R) + e) * sum_rows|dy|

The scalar parts are plain Python; `bounds` works on torch tensors through their methods only, so this module
imports no torch.
"""
from __future__ import annotations

import math
from typing import Any, Dict

#: machine epsilon (distance from 1 to the next number) per dtype name
MACHINE_EPS: Dict[str, float] = {
    "float16": 2.0 ** -10,
    "bfloat16": 2.0 ** -7,
    "float32": 2.0 ** -23,
    "float64": 2.0 ** -52,
}
#: smallest positive subnormal per dtype name
SMALLEST_SUBNORMAL: Dict[str, float] = {
    "float16": 2.0 ** -24,
    "bfloat16": 2.0 ** -133,
    "float32": 2.0 ** -149,
    "float64": 2.0 ** -1074,
}
#: lambda of the probabilistic bound
LAMBDA = 10.0
#: outputs compared, in report order
OUTPUTS = ("y", "mean", "rstd", "dx", "dscale", "dbias")
STATS_DTYPE = "float32"


def machine_eps(dtype: str) -> float:
    """Machine epsilon of a dtype name ('float16', 'bfloat16', 'float32', 'float64')."""
    try:
        return MACHINE_EPS[dtype]
    except KeyError:
        raise ValueError(f"no machine epsilon for dtype {dtype!r}") from None


def accumulation_dtype(x_dtype: str) -> str:
    """The kernels accumulate in float32, in float64 for float64 inputs (acc_t in layer_norm_cuda.cu)."""
    return "float64" if x_dtype == "float64" else "float32"


def summation_factor(terms: int) -> float:
    """min(m, lambda * sqrt(m)): G(m) / e, the rounding errors of a length-m sum in units of e."""
    return min(float(terms), LAMBDA * math.sqrt(terms)) if terms > 0 else 0.0


def summation_error(terms: int, eps: float) -> float:
    """G(m) = min(m, lambda * sqrt(m)) * eps."""
    return summation_factor(terms) * eps


def storage_dtype(output: str, x_dtype: str, w_dtype: str) -> str:
    """y and dx are stored in x's dtype, dscale and dbias in the weights', mean and 1/std in float32."""
    if output in ("y", "dx"):
        return x_dtype
    if output in ("dscale", "dbias"):
        return w_dtype
    if output in ("mean", "rstd"):
        return STATS_DTYPE
    raise ValueError(f"unknown output {output!r}, expected one of {OUTPUTS}")


def storage_eps(output: str, x_dtype: str, w_dtype: str) -> float:
    """eps_o of an output."""
    return machine_eps(storage_dtype(output, x_dtype, w_dtype))


def storage_tiny(output: str, x_dtype: str, w_dtype: str) -> float:
    """tiny_o of an output."""
    return SMALLEST_SUBNORMAL[storage_dtype(output, x_dtype, w_dtype)]


def bounds(x: Any, w: Any, b: Any, dy: Any, mean: Any, rstd: Any, dx: Any, x_dtype: str,
           w_dtype: str) -> Dict[str, Any]:
    """Per-element tolerances of every output (the rule above) from the float64 reference: x, dy, dx [rows,
    hidden]; w, b [hidden]; mean, rstd [rows, 1] (exact statistics). Returns tensors shaped like each output."""
    rows, hidden = x.shape
    e = machine_eps(accumulation_dtype(x_dtype))
    e_cols = machine_eps(STATS_DTYPE)  # the float32 workspace of the column reduction
    eps32 = machine_eps(STATS_DTYPE)
    g_n = summation_error(hidden, e)
    g_r = summation_error(rows, e_cols)

    d = x - mean
    ad = d.abs()
    xh = d * rstd
    a_mean = g_n * x.abs().mean(-1, keepdim=True)
    a_rstd = rstd ** 3 / 2 * g_n * ((x.abs() + ad) * ad).mean(-1, keepdim=True) + 3 * e * rstd
    a_y = w.abs() * (rstd * a_mean + ad * a_rstd) + 4 * e * ((xh * w).abs() + b.abs())

    d_mean = a_mean + eps32 * mean.abs()
    d_rstd = a_rstd + eps32 * rstd
    d_xh = rstd * d_mean + ad * d_rstd + 2 * e * xh.abs()
    g = dy * w
    c1 = g.mean(-1, keepdim=True)
    c2 = (g * xh).mean(-1, keepdim=True)
    d_c1 = (g_n + 2 * e) * g.abs().mean(-1, keepdim=True)
    d_c2 = (g.abs() * d_xh).mean(-1, keepdim=True) + (g_n + 3 * e) * (g * xh).abs().mean(-1, keepdim=True)
    a_dx = (d_rstd / rstd + e) * dx.abs() + rstd * (
        d_c1 + c2.abs() * d_xh + xh.abs() * d_c2 + 4 * e * (g.abs() + c1.abs() + (xh * c2).abs()))
    a_dscale = (dy.abs() * d_xh).sum(0) + (g_r + 2 * e_cols) * (dy * xh).abs().sum(0)
    a_dbias = (g_r + e_cols) * dy.abs().sum(0)

    extra = {"y": a_y, "mean": a_mean.reshape(-1), "rstd": a_rstd.reshape(-1), "dx": a_dx, "dscale": a_dscale,
             "dbias": a_dbias}
    return {name: extra[name] for name in OUTPUTS}


def tolerance(output: str, ref: Any, extra: Any, x_dtype: str, w_dtype: str) -> Any:
    """eps_o * |ref| + tiny_o + A: the full per-element tolerance of one output (A from `bounds`)."""
    return storage_eps(output, x_dtype, w_dtype) * ref.abs() + storage_tiny(output, x_dtype, w_dtype) + extra
