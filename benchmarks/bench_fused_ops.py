"""The fused CPU ops of external_ops/ (linear through oneDNN, SwiGLU, RoPE on packed qkv) against the plain Paddle
expressions they replace and torch's equivalents, on the GEMM and elementwise shapes of EVA-02 Ti / S blocks.

    make ops && python benchmarks/bench_fused_ops.py
    python benchmarks/bench_fused_ops.py --models Ti --sizes 224 --runs 15 --tune-malloc

Per model and input size (batch 8 by default, float32, 2 threads for every framework): forward (no grad) and
forward + backward (every input trainable except the RoPE tables) of each op, median ms, and the ratios
plain Paddle / fused and torch / fused (> 1: the fused op is faster). "Paddle" is the plain expression the op
replaces (`paddlemix_eva_ops.plain`); two extra RoPE rows compare the split variant with the fused rope_qkv plus
Paddle's transposes, and with the library's current eager path (GEMM-form `apply_rope_packed_qkv`, unbind,
transposes). Timings follow benchmarks/timing.py's
blocks-of-calls protocol. Paddle runs with the training entry points' settings (no stride kernels: Paddle's
transposes materialise their result; torch's stay views).
"""
from __future__ import annotations

import argparse
import logging
import statistics
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import paddlemix_eva  # noqa: F401  (before paddle)

# isort: split
import numpy as np
import paddle
import torch

from paddlemix_eva.layers.rope import VisionRotaryEmbedding, apply_rope_packed_qkv
from paddlemix_eva.runtime import configure_training_runtime, cpuinfo_field, set_cpu_threads, tune_glibc_malloc

from timing import add_timing_arguments, csv_list, markdown_table, parse_timing_arguments, setup_logging, time_in_rounds

logger = logging.getLogger("bench_fused_ops")

#: embed dim, heads, SwiGLU hidden size (int(dim * 2.6667)), patch size
MODELS = {"Ti": (192, 3, 512, 14), "S": (384, 6, 1024, 14)}

Runner = Callable[[], object]


@dataclass
class Case:
    """One table row: what runs as fused / plain Paddle / torch, given as input factories (fresh leaves per
    direction) and a function per framework."""

    name: str
    paddle_inputs: Callable[[bool], list]  # grad -> paddle tensors
    torch_inputs: Callable[[bool], list]
    fused: Callable
    plain: Callable
    reference: Callable


def as_paddle(arrays: Sequence[np.ndarray], trainable: Sequence[bool], grad: bool) -> list:
    out = []
    for array, train in zip(arrays, trainable):
        t = paddle.to_tensor(array)
        t.stop_gradient = not (grad and train)
        out.append(t)
    return out


def as_torch(arrays: Sequence[np.ndarray], trainable: Sequence[bool], grad: bool) -> list:
    return [torch.from_numpy(a.copy()).requires_grad_(grad and train) for a, train in zip(arrays, trainable)]


# ------------------------------------------------------------------------------------------ torch peers
def torch_rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


def torch_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + torch_rotate_pairs(x) * sin


def torch_rope_qkv(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    q, k, v = qkv.unbind(2)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    return torch.stack([torch_rope(q, c, s), torch_rope(k, c, s), v], dim=2)


def torch_rope_qkv_split(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_scale: float):
    """timm's EVA layout: permute the packed qkv to [3, B, heads, N, d] views, rotate q and k."""
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return torch_rope(q, cos, sin) * q_scale, torch_rope(k, cos, sin), v


# ---------------------------------------------------------------------------------------------- cases
def linear_case(name: str, rows: int, tokens: int, k: int, n: int, residual: bool, rng) -> Case:
    from paddlemix_eva_ops import linear
    from paddlemix_eva_ops.plain import plain_linear

    arrays = [rng.standard_normal([rows, tokens, k]).astype(np.float32),
              (rng.standard_normal([k, n]) / np.sqrt(k)).astype(np.float32),
              rng.standard_normal(n).astype(np.float32)]
    if residual:
        arrays.append(rng.standard_normal([rows, tokens, n]).astype(np.float32))
    torch_arrays = [arrays[0], np.ascontiguousarray(arrays[1].T)] + arrays[2:]  # torch's Linear: weight [out, in]
    trainable = [True] * len(arrays)

    def torch_linear(x, w, b, r=None):
        out = torch.nn.functional.linear(x, w, b)
        return out if r is None else out + r

    return Case(name, lambda g: as_paddle(arrays, trainable, g), lambda g: as_torch(torch_arrays, trainable, g),
                lambda *a: linear(*a), lambda *a: plain_linear(*a), torch_linear)


def swiglu_case(rows: int, tokens: int, hidden: int, rng) -> Case:
    from paddlemix_eva_ops import swiglu
    from paddlemix_eva_ops.plain import plain_swiglu

    arrays = [rng.standard_normal([rows, tokens, 2 * hidden]).astype(np.float32)]

    def torch_swiglu(h):
        a, b = h.chunk(2, dim=-1)
        return torch.nn.functional.silu(a) * b

    return Case(f"swiglu [{rows}, {tokens}, {2 * hidden}]", lambda g: as_paddle(arrays, [True], g),
                lambda g: as_torch(arrays, [True], g), swiglu, plain_swiglu, torch_swiglu)


def rope_cases(rows: int, grid: int, dim: int, heads: int, rng, q_scale: float) -> List[Case]:
    from paddlemix_eva_ops import rope_qkv, rope_qkv_split
    from paddlemix_eva_ops.plain import plain_rope_qkv, plain_rope_qkv_split

    head_dim = dim // heads
    rope = VisionRotaryEmbedding(head_dim, (grid, grid))
    cos, sin = rope.freqs_cos.numpy(), rope.freqs_sin.numpy()
    tokens = cos.shape[0]
    arrays = [rng.standard_normal([rows, tokens, 3, heads, head_dim]).astype(np.float32), cos, sin]
    trainable = [True, False, False]
    shape = f"[{rows}, {tokens}, 3, {heads}, {head_dim}]"

    def fused_then_transposes(qkv, c, s):
        """The rope_qkv op followed by the layers' eager unbind + transposes (and the q scale)."""
        q, k, v = (t.transpose([0, 2, 1, 3]) for t in paddle.unbind(rope_qkv(qkv, c, s), axis=2))
        return q * q_scale, k, v

    def layers_path(qkv, c, s):
        """What the library's eager matmul attention does today: the packed GEMM-form RoPE, unbind, transposes."""
        q, k, v = (t.transpose([0, 2, 1, 3]) for t in paddle.unbind(apply_rope_packed_qkv(qkv, c, s), axis=2))
        return q * q_scale, k, v

    paddle_in = lambda g: as_paddle(arrays, trainable, g)  # noqa: E731
    torch_in = lambda g: as_torch(arrays, trainable, g)  # noqa: E731
    return [
        Case(f"rope_qkv {shape}", paddle_in, torch_in, rope_qkv, plain_rope_qkv, torch_rope_qkv),
        Case(f"rope_qkv_split {shape}", paddle_in, torch_in,
             lambda q, c, s: rope_qkv_split(q, c, s, q_scale), lambda q, c, s: plain_rope_qkv_split(q, c, s, q_scale),
             lambda q, c, s: torch_rope_qkv_split(q, c, s, q_scale)),
        Case(f"rope_qkv_split vs rope_qkv + transposes {shape}", paddle_in, torch_in,
             lambda q, c, s: rope_qkv_split(q, c, s, q_scale), fused_then_transposes,
             lambda q, c, s: torch_rope_qkv_split(q, c, s, q_scale)),
        Case(f"rope_qkv_split vs layers' apply_rope_packed_qkv + transposes {shape}", paddle_in, torch_in,
             lambda q, c, s: rope_qkv_split(q, c, s, q_scale), layers_path,
             lambda q, c, s: torch_rope_qkv_split(q, c, s, q_scale)),
    ]


def block_cases(model: str, size: int, batch: int, rng) -> List[Case]:
    dim, heads, hidden, patch = MODELS[model]
    grid = size // patch
    tokens = grid * grid + 1
    return [
        linear_case(f"linear qkv [{batch}, {tokens}, {dim}] x [{dim}, {3 * dim}] +b", batch, tokens, dim, 3 * dim,
                    False, rng),
        linear_case(f"linear proj [{batch}, {tokens}, {dim}] x [{dim}, {dim}] +b +res", batch, tokens, dim, dim,
                    True, rng),
        linear_case(f"linear w12 [{batch}, {tokens}, {dim}] x [{dim}, {2 * hidden}] +b", batch, tokens, dim,
                    2 * hidden, False, rng),
        linear_case(f"linear w3 [{batch}, {tokens}, {hidden}] x [{hidden}, {dim}] +b +res", batch, tokens, hidden,
                    dim, True, rng),
        swiglu_case(batch, tokens, hidden, rng),
        *rope_cases(batch, grid, dim, heads, rng, q_scale=(dim // heads) ** -0.5),
    ]


# -------------------------------------------------------------------------------------------- runners
def outputs(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def paddle_runners(fn: Callable, make_inputs: Callable[[bool], list]) -> Dict[str, Runner]:
    frozen, leaves = make_inputs(False), make_inputs(True)
    with paddle.no_grad():
        grads = [paddle.ones_like(o) for o in outputs(fn(*frozen))]

    def forward():
        with paddle.no_grad():
            return fn(*frozen)

    def forward_backward():
        paddle.autograd.backward(outputs(fn(*leaves)), grads)
        for t in leaves:
            if not t.stop_gradient:
                t.clear_gradient(False)

    return {"fwd": forward, "fwd+bwd": forward_backward}


def torch_runners(fn: Callable, make_inputs: Callable[[bool], list]) -> Dict[str, Runner]:
    frozen, leaves = make_inputs(False), make_inputs(True)
    with torch.no_grad():
        grads = [torch.ones_like(o) for o in outputs(fn(*frozen))]

    def forward():
        with torch.no_grad():
            return fn(*frozen)

    def forward_backward():
        torch.autograd.backward(outputs(fn(*leaves)), grads)
        for t in leaves:
            t.grad = None

    return {"fwd": forward, "fwd+bwd": forward_backward}


def time_case(case: Case, args) -> Dict[str, float]:
    runners: Dict[str, Runner] = {}
    for impl, built in (("fused", paddle_runners(case.fused, case.paddle_inputs)),
                        ("paddle", paddle_runners(case.plain, case.paddle_inputs)),
                        ("torch", torch_runners(case.reference, case.torch_inputs))):
        runners.update({f"{direction} {impl}": run for direction, run in built.items()})
    times = time_in_rounds(runners, args.warmup, args.runs, args.rounds)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def table_row(model: str, size: int, case: Case, ms: Dict[str, float]) -> List[str]:
    row = [f"{model}@{size}", case.name]
    for direction in ("fwd", "fwd+bwd"):
        fused_ms = ms[f"{direction} fused"]
        row += [f"{fused_ms:.2f}", f"{ms[f'{direction} paddle']:.2f}", f"{ms[f'{direction} torch']:.2f}",
                f"{ms[f'{direction} paddle'] / fused_ms:.2f}", f"{ms[f'{direction} torch'] / fused_ms:.2f}"]
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_arguments(parser, batches="8", warmup=3, runs=15)
    parser.add_argument("--models", default="Ti,S", help="comma-separated, from: " + ",".join(MODELS))
    parser.add_argument("--sizes", default="224,336", help="comma-separated input sizes")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="paddlemix_eva.runtime.tune_glibc_malloc() first (affects Paddle and torch alike)")
    args = parse_timing_arguments(parser, argv)
    setup_logging("paddlemix_eva_ops")
    try:
        import paddlemix_eva_ops
    except ImportError as err:
        parser.error(f"the fused ops are not installed ({err}); build them with `make ops`")
    info = paddlemix_eva_ops.onednn_info()
    if not info.available:
        logger.warning("oneDNN unavailable (%s): the fused linear rows time F.linear", info.description)
    configure_training_runtime()
    set_cpu_threads(args.threads)
    torch.set_num_threads(args.threads)
    if args.tune_malloc and not tune_glibc_malloc():
        logger.warning("--tune-malloc: mallopt is unavailable here")

    rng = np.random.default_rng(0)
    rows: List[List[str]] = []
    for batch in args.batches:
        for model in csv_list(args.models):
            for size in csv_list(args.sizes, int):
                for case in block_cases(model, size, batch, rng):
                    ms = time_case(case, args)
                    rows.append(table_row(model, size, case, ms))
                    logger.info("%s", " | ".join(rows[-1]))
    header = ["model", "op (batch, tokens, ...)"]
    for direction in ("fwd", "fwd+bwd"):
        header += [f"{direction} fused ms", f"{direction} paddle ms", f"{direction} torch ms",
                   f"{direction} paddle/fused", f"{direction} torch/fused"]
    print(f"CPU: {cpuinfo_field('model name') or 'unknown'}, {args.threads} threads; {info.description}; "
          f"paddle {paddle.__version__}, torch {torch.__version__}; float32; medians of {args.runs} calls"
          + ("; glibc malloc tuned" if args.tune_malloc else ""))
    print(markdown_table(header, ["l", "l"] + ["r"] * 10, rows, args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
