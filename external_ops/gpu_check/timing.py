"""Times our kernels, PyTorch's and a device-to-device copy with CUDA events (median, warm-up excluded)."""
from __future__ import annotations

import logging
import statistics
from typing import Callable, List, Sequence, Tuple

import torch

from .bandwidth import PASSES, BandwidthRow
from .cases import EPS_DEFAULT
from .lib import LayerNormLibrary

log = logging.getLogger(__name__)


#: GPU clock cycles of the spin kernel queued ahead of the timed calls (about 50 ms at 2 GHz)
SPIN_CYCLES = 100_000_000


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    """Median over `repeats` calls of the GPU time of `fn` (one event pair per call), after `warmup` calls.
    A spin kernel runs first so that the host queues every timed call before the GPU reaches them: the events
    then time the kernels back to back, without the host's launch overhead (tens of microseconds, comparable to
    the kernels at these shapes)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    if hasattr(torch.cuda, "_sleep"):
        torch.cuda._sleep(SPIN_CYCLES)
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)


def measure_shape(lib: LayerNormLibrary, dtype: str, rows: int, hidden: int, device: torch.device, warmup: int,
                  repeats: int) -> List[BandwidthRow]:
    """Forward and backward rows of the table for one shape; weights in x's dtype (what PyTorch takes)."""
    tdtype = getattr(torch, dtype)
    gen = torch.Generator(device=device).manual_seed(rows + hidden)
    x = torch.randn(rows, hidden, generator=gen, device=device).to(tdtype)
    dy = torch.randn(rows, hidden, generator=gen, device=device).to(tdtype)
    w = (1 + 0.25 * torch.randn(hidden, generator=gen, device=device)).to(tdtype)
    b = (0.5 * torch.randn(hidden, generator=gen, device=device)).to(tdtype)
    y, dx = torch.empty_like(x), torch.empty_like(x)
    mean = torch.empty(rows, dtype=torch.float32, device=device)
    rstd = torch.empty_like(mean)
    dscale, dbias = torch.empty_like(w), torch.empty_like(w)
    workspace = torch.empty(lib.workspace_floats(rows, hidden), dtype=torch.float32, device=device)
    shape = [hidden]
    _, t_mean, t_rstd = torch.ops.aten.native_layer_norm(x, shape, w, b, EPS_DEFAULT)
    copy_dst = torch.empty_like(x)

    lib.forward(x, w, b, y, mean, rstd, EPS_DEFAULT)  # the backward's statistics
    timed = {
        "forward": (lambda: lib.forward(x, w, b, y, mean, rstd, EPS_DEFAULT),
                    lambda: torch.ops.aten.native_layer_norm(x, shape, w, b, EPS_DEFAULT)),
        "backward": (lambda: lib.backward(x, w, mean, rstd, dy, dx, dscale, dbias, workspace),
                     lambda: torch.ops.aten.native_layer_norm_backward(dy, x, shape, t_mean, t_rstd, w, b,
                                                                       [True, True, True])),
    }
    copy_ms = median_ms(lambda: copy_dst.copy_(x), warmup, repeats)
    out = []
    for pass_name in PASSES:
        ours, theirs = timed[pass_name]
        out.append(BandwidthRow(pass_name, dtype, rows, hidden, median_ms(ours, warmup, repeats),
                                median_ms(theirs, warmup, repeats), copy_ms))
    return out


def measure_all(lib: LayerNormLibrary, shapes: Sequence[Tuple[int, int]], dtypes: Sequence[str],
                device: torch.device, warmup: int, repeats: int) -> List[BandwidthRow]:
    """Every (dtype, shape) of the table; a shape that fails (e.g. out of memory) is logged and left out."""
    rows_out: List[BandwidthRow] = []
    for dtype in dtypes:
        for rows, hidden in shapes:
            try:
                measured = measure_shape(lib, dtype, rows, hidden, device, warmup, repeats)
            except (RuntimeError, ValueError) as exc:
                log.error("bandwidth %s [%d, %d] failed: %s", dtype, rows, hidden, exc)
                continue
            for row in measured:
                log.info("bandwidth %-8s %-8s [%d, %d]: ours %.1f GB/s, torch %.1f GB/s, copy %.1f GB/s",
                         row.pass_name, dtype, rows, hidden, row.ours_gbps, row.torch_gbps, row.copy_gbps)
            rows_out.extend(measured)
            torch.cuda.empty_cache()
    return rows_out
