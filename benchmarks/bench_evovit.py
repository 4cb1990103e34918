"""CPU inference speed of Evo-DeiT against DeiT (and Evo-LeViT against LeViT) with the same weights, in one process.

    python benchmarks/bench_evovit.py                          # Evo-DeiT-S vs DeiT-S, batch 8 and 32
    python benchmarks/bench_evovit.py --batches 8 --backends dygraph --runs 15
    python benchmarks/bench_evovit.py --model LeViT-256        # Evo-LeViT-256 vs LeViT-256, BatchNorms folded
    python benchmarks/bench_evovit.py --markdown /tmp/evovit.md

DeiT is the same Evo-DeiT model with selection disabled (`keep_ratio=1`) and the same weights, so the two differ
only by the token selection. Both run in eval mode (stage-wise selection) under `paddle.no_grad()`, float32, 2
threads, random weights and inputs, in blocks of consecutive calls spread over rounds (`timing.time_in_rounds`,
the protocol of bench_inference.py). Backends:

  dygraph    the eager forward (the fused CPU attention kernel serves both models)
  inference  each model exported to a static graph and run by Paddle Inference with oneDNN
             (`paddlemix_eva.inference_backend.compile_for_cpu`)
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from typing import Callable, Dict

import paddlemix_eva  # noqa: F401  (before paddle: CPU backend settings)

# isort: split
import numpy as np
import paddle

from paddlemix_eva import zoo
from paddlemix_eva.models.evovit import EvoDeiT
from paddlemix_eva.utils.runtime import cpuinfo_field, set_cpu_threads

from timing import (
    add_timing_arguments,
    csv_list,
    markdown_table,
    parse_timing_arguments,
    setup_logging,
    time_in_rounds,
)

SIZES = {"Ti": "evo_deit_tiny_patch16_224", "S": "evo_deit_small_patch16_224", "B": "evo_deit_base_patch16_224",
         **{f"LeViT-{size}": f"evo_levit_{size}" for size in ("128S", "128", "192", "256", "384")}}
BACKENDS = ("dygraph", "inference")
logger = logging.getLogger("bench_evovit")


def build_pair(name: str):
    """(Evo model, the same model without selection) in eval mode with identical weights: Evo-DeiT and DeiT with
    the training-only cls head removed, or Evo-LeViT and LeViT (every prune ratio 1) with BatchNorms folded."""
    entry = zoo.get_entry(name)
    model_class = entry.load_class()
    no_selection = {"keep_ratio": 1.0} if model_class is EvoDeiT else {
        "prune_ratios": [1.0] * len(entry.config["prune_ratios"])}
    evo = model_class(zoo.build_config(entry, model_class.config_class)).eval()
    plain = model_class(zoo.build_config(entry, model_class.config_class, **no_selection)).eval()
    plain.set_state_dict(evo.state_dict())
    for model in (evo, plain):
        if model_class is EvoDeiT:
            model.remove_cls_head()
        else:
            model.fuse_batch_norms()
    return evo, plain


def runners_for(args, evo, plain, images: np.ndarray) -> Dict[str, Callable[[], object]]:
    runners: Dict[str, Callable[[], object]] = {}
    x = paddle.to_tensor(images)
    for backend in args.backends:
        for tag, model in (("evo", evo), ("deit", plain)):
            if backend == "dygraph":
                def run(model=model):
                    with paddle.no_grad():
                        return model(x).numpy()
            else:
                from paddlemix_eva.tasks.export import compile_for_cpu

                predictor = compile_for_cpu(model, num_threads=args.threads)
                with paddle.no_grad():
                    diff = float(np.abs(predictor(images) - model(x).numpy()).max())
                logger.info("%s: Paddle Inference vs eager, max |logit diff| %.1e", tag, diff)

                def run(predictor=predictor):
                    return predictor(images)
            runners[f"{backend}/{tag}"] = run
    return runners


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="S", choices=list(SIZES), help="Evo-DeiT size or LeViT-<size>")
    parser.add_argument("--backends", default="dygraph,inference", help="comma-separated, from: " + ",".join(BACKENDS))
    add_timing_arguments(parser, batches="8,32")
    args = parse_timing_arguments(parser, argv)
    setup_logging()
    args.backends = csv_list(args.backends)
    if not args.backends or any(b not in BACKENDS for b in args.backends):
        parser.error(f"--backends must name some of {', '.join(BACKENDS)}")

    set_cpu_threads(args.threads)
    paddle.seed(0)
    evo, plain = build_pair(SIZES[args.model])
    logger.info("%s, %d threads, paddle %s, load %s; %s", cpuinfo_field("model name") or "CPU", args.threads,
                paddle.__version__, " ".join(f"{v:.2f}" for v in os.getloadavg()), SIZES[args.model])
    rows = []
    for batch in args.batches:
        images = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        times = time_in_rounds(runners_for(args, evo, plain, images), args.warmup, args.runs, args.rounds)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for backend in args.backends:
            evo_s, deit_s = medians[f"{backend}/evo"], medians[f"{backend}/deit"]
            rows.append((batch, backend, batch / deit_s, batch / evo_s, deit_s / evo_s))
            logger.info("batch %d %-9s plain %.1f img/s  Evo %.1f img/s  speed-up %.2fx", *rows[-1])
    plain_name = args.model if args.model.startswith("LeViT") else f"DeiT-{args.model}"
    header = ["batch", "backend", f"{plain_name} img/s", f"Evo-{plain_name} img/s", "Evo / plain"]
    cells = [[str(b), backend, f"{d:.1f}", f"{e:.1f}", f"{r:.2f}x"] for b, backend, d, e, r in rows]
    print(markdown_table(header, "rlrrr", cells, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
