"""CPU inference speed of our EVA-02 classifiers next to timm's, measured in the same process.

    python benchmarks/bench_inference.py                      # Ti and S at 224 and 336, batch 1 and 8, 2 threads
    python benchmarks/bench_inference.py --models Ti --sizes 224 --batches 8 --backends inference --runs 9
    python benchmarks/bench_inference.py --markdown /tmp/table.md

For every (model, size) the timm model and each of our backends are built, warmed up, and then timed in rounds
(a few consecutive calls of timm, then of each backend, repeated) so that slow phases of a shared machine hit
all of them alike; the table reports the median images/s and ours/timm. Backends:

  inference  our model exported to a static graph and run by Paddle Inference with oneDNN
             (`paddlemix_eva.inference_backend.compile_for_cpu`)
  inference-bf16  the same with oneDNN's bfloat16 kernels (AVX512-BF16 / AMX CPUs; `--dtype bf16` exports);
             its logits are compared with the float32 eager forward (relative max gap, top-1 agreement)
  dygraph    our model's eager forward under `paddle.no_grad()`

Random weights (speed does not depend on them); eval mode, float32, no grad / `torch.inference_mode()`.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
from typing import Callable, Dict

import paddlemix_eva  # noqa: F401  (before paddle: selects MKL's fast path on AMD, see paddlemix_eva/runtime.py)

# isort: split
import numpy as np
import paddle

from paddlemix_eva import layers
from paddlemix_eva.utils import runtime
from paddlemix_eva.utils.runtime import set_cpu_threads

from timing import (
    add_timing_arguments,
    csv_list,
    markdown_table,
    parse_timing_arguments,
    setup_logging,
    time_in_rounds,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = {"Ti": "eva02_Ti_pt_in21k_ft_in1k_p14", "S": "eva02_S_pt_in21k_ft_in1k_p14"}
TIMM = {"Ti": "eva02_tiny_patch14_{}", "S": "eva02_small_patch14_{}"}
BACKENDS = ("inference", "inference-bf16", "dygraph")

logger = logging.getLogger("bench_inference")
#: (model, size, batch, backend) -> (relative max logit gap to the eager float32 forward, top-1 agreement)
GAPS: Dict[tuple, tuple] = {}


def import_timm():
    """timm through the test suite's helper (it registers the torchvision op schemas timm's import needs)."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    try:
        from peers import import_timm as _import_timm
    finally:
        sys.path.pop(0)
    return _import_timm()


def cpu_name() -> str:
    from paddlemix_eva.utils.runtime import cpuinfo_field

    return cpuinfo_field("model name") or platform.processor() or "unknown CPU"


def build_runners(args, tag: str, size: int, images: np.ndarray, timm) -> Dict[str, Callable[[], object]]:
    runners: Dict[str, Callable[[], object]] = {}
    if timm is not None:
        import torch

        if size in (224, 336):  # timm's registered EVA-02 Ti/S sizes
            tm = timm.create_model(TIMM[tag].format(size), pretrained=False, num_classes=1000)
        else:
            tm = timm.create_model(TIMM[tag].format(224), pretrained=False, num_classes=1000, img_size=size)
        tm = tm.eval()
        x_torch = torch.from_numpy(images)

        def run_timm():
            with torch.inference_mode():
                return tm(x_torch)

        runners["timm"] = run_timm

    model = paddlemix_eva.get_model(ZOO[tag], image_size=size).eval()
    with paddle.no_grad():  # logits of order 1, as a trained head gives, so bf16 top-1 agreement means something
        model.head.weight.set_value(model.head.weight * 30.0)
    x_paddle = paddle.to_tensor(images)

    def run_dygraph():
        with paddle.no_grad():
            return model(x_paddle).numpy()

    reference = None
    for backend in args.backends:
        if backend == "dygraph":
            runners["ours-dygraph"] = run_dygraph
        else:
            from paddlemix_eva.tasks.export import compile_for_cpu

            bf16 = backend == "inference-bf16"
            predictor = compile_for_cpu(model, num_threads=args.threads, onednn=not args.no_onednn, bf16=bf16)
            reference = run_dygraph() if reference is None else reference
            logits = predictor(images)
            gap = float(np.abs(logits - reference).max() / np.abs(reference).max())
            agree = float((logits.argmax(1) == reference.argmax(1)).mean())
            logger.info("%s@%d b%d: %s vs eager float32: relative max |logit gap| %.2e, top-1 agreement %.0f%%",
                        tag, size, len(images), backend, gap, 100 * agree)
            GAPS[(tag, size, len(images), backend)] = (gap, agree)
            name = f"ours-{backend}" if not args.no_onednn else f"ours-{backend}-no-onednn"
            runners[name] = lambda predictor=predictor: predictor(images)
    return runners


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="Ti,S", help="comma-separated, from: " + ",".join(ZOO))
    parser.add_argument("--sizes", default="224,336", help="comma-separated input sizes (multiples of 14)")
    add_timing_arguments(parser, batches="1,8")
    parser.add_argument(
        "--backends", default="dygraph,inference,inference-bf16",
        help="our backends, comma-separated, from: " + ",".join(BACKENDS)
    )
    parser.add_argument("--no-onednn", action="store_true", help="inference backend without oneDNN kernels")
    parser.add_argument(
        "--matmul-attention",
        action="store_true",
        help="our models without the fused CPU attention kernel (switches.CPU_FUSED_ATTENTION off)",
    )
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's allocator defaults (the library raises its thresholds at the first model built, which "
             "then serves timm in this process too)",
    )
    parser.add_argument("--no-timm", action="store_true", help="time our backends only")
    args = parse_timing_arguments(parser, argv)
    setup_logging()

    args.models = csv_list(args.models)
    args.sizes = csv_list(args.sizes, int)
    args.backends = csv_list(args.backends)
    for model in args.models:
        if model not in ZOO:
            parser.error(f"unknown model {model!r}; choose from {', '.join(ZOO)}")
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    for size in args.sizes:
        if size % 14:
            parser.error(f"size {size} is not a multiple of the patch size 14")
    if not args.backends:
        parser.error("--backends is empty")
    if "inference-bf16" in args.backends:
        from paddlemix_eva.tasks.export import cpu_has_bf16

        if not cpu_has_bf16():
            logger.warning("this CPU has no native bfloat16 (AVX512-BF16 / AMX): skipping the inference-bf16 backend")
            args.backends.remove("inference-bf16")

    if args.matmul_attention:
        layers.switches.CPU_FUSED_ATTENTION.set(False)
    if args.default_malloc:
        os.environ[runtime.TUNE_MALLOC_ENV] = "0"
    set_cpu_threads(args.threads)  # eager CPU kernels; the predictor gets its threads from its config
    timm = None
    if not args.no_timm:
        timm = import_timm()
        import torch

        torch.set_num_threads(args.threads)
    versions = f"paddle {paddle.__version__}"
    if timm is not None:
        import torch

        versions += f", torch {torch.__version__}, timm {timm.__version__}"
    logger.info("%s, %d threads, batches %s, %s, MKL_DEBUG_CPU_TYPE=%s, CPU fused attention %s, malloc %s",
                cpu_name(), args.threads, args.batches, versions, os.environ.get("MKL_DEBUG_CPU_TYPE", "unset"),
                "on" if layers.cpu_fused_attention_available() else "off",
                "glibc defaults" if args.default_malloc else "the library's (raised thresholds)")

    rows = []
    for tag in args.models:
        for size in args.sizes:
            for batch in args.batches:
                images = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
                runners = build_runners(args, tag, size, images, timm)
                times = time_in_rounds(runners, args.warmup, args.runs, args.rounds)
                medians = {name: statistics.median(t) for name, t in times.items()}
                for name, median in medians.items():
                    if name == "timm":
                        continue
                    row = {"model": tag, "size": size, "batch": batch, "backend": name, "ours_s": median,
                           "ours_ips": batch / median, "timm_s": medians.get("timm"),
                           "timm_ips": batch / medians["timm"] if "timm" in medians else None,
                           "gap": GAPS.get((tag, size, batch, name.replace("ours-", "")))}
                    row["ratio"] = row["ours_ips"] / row["timm_ips"] if row["timm_ips"] else None
                    rows.append(row)
                    logger.info("%s@%d b%d %-26s %6.3f s/batch %7.1f img/s   timm %s", tag, size, batch, name,
                                median, row["ours_ips"], "-" if row["timm_s"] is None else
                                f"{row['timm_s']:.3f} s/batch {row['timm_ips']:.1f} img/s  "
                                f"ours/timm {row['ratio']:.2f}")

    cells = []
    for r in rows:
        timm_ips = "-" if r["timm_ips"] is None else f"{r['timm_ips']:.1f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        gap = "-" if r["gap"] is None else f"{r['gap'][0]:.1e} / {100 * r['gap'][1]:.0f}%"
        cells.append([f"EVA-02 {r['model']}", str(r["size"]), str(r["batch"]), r["backend"], f"{r['ours_ips']:.1f}",
                      timm_ips, ratio, gap])
    header = ["model", "input", "batch", "ours (backend)", "ours img/s", "timm img/s", "ours/timm",
              "logit gap / top-1 agree"]
    table = markdown_table(header, "llrlrrrl", cells, args.markdown)
    logger.info("\n%s", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
