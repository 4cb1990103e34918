"""FusedLayerNorm (external_ops/) against paddle.nn.LayerNorm on CPU, in the same process.

    make ops && python benchmarks/bench_layernorm.py
    python benchmarks/bench_layernorm.py --runs 30 --step-batch 8 --step-size 224

Per shape: forward (no grad) and forward + backward (all three gradients) of each LayerNorm, float32, then one
training step (forward, loss, backward) of an EVA-02 Ti classifier built with each LayerNorm and the same weights.
Timings use the blocks-of-calls protocol of benchmarks/timing.py; the table reports medians and plain/fused.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
from typing import Callable, Dict, List, Sequence

import paddlemix_eva  # noqa: F401  (before paddle)

# isort: split
import numpy as np
import paddle
import paddle.nn.functional as F

from paddlemix_eva import zoo
from paddlemix_eva.layers import switches
from paddlemix_eva.utils.runtime import configure_training_runtime

from timing import setup_logging, time_in_rounds

SHAPES = ([8, 257, 192], [8, 577, 384], [8, 1025, 1024], [8, 257, 2730])
logger = logging.getLogger("bench_layernorm")


def layer_norm_runners(shape: Sequence[int], fused_layer_norm) -> Dict[str, Callable[[], object]]:
    hidden = shape[-1]
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal(shape).astype(np.float32), stop_gradient=False)
    weight = paddle.to_tensor(rng.uniform(0.5, 1.5, hidden).astype(np.float32), stop_gradient=False)
    bias = paddle.to_tensor(rng.standard_normal(hidden).astype(np.float32), stop_gradient=False)
    dy = paddle.to_tensor(rng.standard_normal(shape).astype(np.float32))
    plain = lambda: F.layer_norm(x, [hidden], weight, bias, 1e-6)  # noqa: E731
    fused = lambda: fused_layer_norm(x, weight, bias, 1e-6)  # noqa: E731

    def forward(fn):
        def run():
            with paddle.no_grad():
                return fn()
        return run

    def forward_backward(fn):
        def run():
            paddle.autograd.backward([fn()], [dy])
            for t in (x, weight, bias):
                t.clear_gradient(False)
        return run

    return {"fwd plain": forward(plain), "fwd fused": forward(fused),
            "fwd+bwd plain": forward_backward(plain), "fwd+bwd fused": forward_backward(fused)}


def training_step_runners(batch: int, size: int) -> Dict[str, Callable[[], object]]:
    """One EVA-02 Ti training step (train mode, cross-entropy, backward) per LayerNorm, same weights."""
    models = {}
    for name, fused in (("fused", True), ("plain", False)):
        with switches.FUSED_LAYER_NORM.overridden(fused):
            paddle.seed(0)
            models[name] = zoo.get_model("eva02_Ti_pt_in21k_ft_in1k_p14", image_size=size).train()
    models["plain"].set_state_dict(models["fused"].state_dict())
    images = paddle.randn([batch, 3, size, size])
    labels = paddle.randint(0, 1000, [batch])

    def step(model):
        def run():
            F.cross_entropy(model(images), labels).backward()
            model.clear_gradients(False)
        return run

    return {f"Ti step {name}": step(model) for name, model in models.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="timed calls per runner (median reported)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--step-batch", type=int, default=8, help="batch of the EVA-02 Ti training step")
    parser.add_argument("--step-size", type=int, default=224, help="input size of the EVA-02 Ti training step")
    parser.add_argument("--step-runs", type=int, default=6, help="timed training steps per LayerNorm")
    args = parser.parse_args(argv)
    setup_logging("paddlemix_eva_ops")
    try:
        from paddlemix_eva_ops import fused_layer_norm
    except ImportError as err:
        parser.error(f"the FusedLayerNorm op is not installed ({err}); build it with `make ops`")
    configure_training_runtime()  # what the training scripts run with: no stride kernels, all cores
    logger.info("paddle %s, %d CPU cores, float32; Paddle's kernels and the op's OpenMP loops use all of them",
                paddle.__version__, os.cpu_count())

    rows: List[str] = ["| input | fwd plain ms | fwd fused ms | fwd plain/fused | fwd+bwd plain ms | "
                       "fwd+bwd fused ms | fwd+bwd plain/fused |", "|---|---:|---:|---:|---:|---:|---:|"]
    for shape in SHAPES:
        times = time_in_rounds(layer_norm_runners(shape, fused_layer_norm), args.warmup, args.runs, args.rounds)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        rows.append(f"| {list(shape)} | {ms['fwd plain']:.2f} | {ms['fwd fused']:.2f} | "
                    f"{ms['fwd plain'] / ms['fwd fused']:.2f} | {ms['fwd+bwd plain']:.2f} | "
                    f"{ms['fwd+bwd fused']:.2f} | {ms['fwd+bwd plain'] / ms['fwd+bwd fused']:.2f} |")
    step_runners = training_step_runners(args.step_batch, args.step_size)
    times = time_in_rounds(step_runners, 1, args.step_runs, min(args.rounds, args.step_runs))
    step = {name: statistics.median(t) for name, t in times.items()}
    print("\n".join(rows))
    print(f"\nEVA-02 Ti training step, batch {args.step_batch} at {args.step_size} px: plain LayerNorm "
          f"{step['Ti step plain']:.3f} s, fused {step['Ti step fused']:.3f} s, "
          f"plain/fused {step['Ti step plain'] / step['Ti step fused']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
