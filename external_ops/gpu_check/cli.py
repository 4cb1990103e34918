"""Command line of the GPU check: correctness sweep, bandwidth table, report, exit status.

Exit status: 0 every case passes; 1 a case fails (after all have run and been reported); 2 bad arguments;
3 no CUDA device (or a CPU-only PyTorch); 4 set-up problem (no PyTorch, library missing or not loadable).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from . import bandwidth as bw
from .cases import full_cases, quick_cases
from .report import OUT_SUFFIXES, render, text_report

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_NO_GPU = 3
EXIT_SETUP = 4
LIB_ENV = "GPU_CHECK_LIB"

log = logging.getLogger("gpu_check")


def _out_path(value: str) -> str:
    if not value.endswith(OUT_SUFFIXES):
        raise argparse.ArgumentTypeError(f"must end in one of {', '.join(OUT_SUFFIXES)}: {value!r}")
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_check",
        description="Checks the CUDA kernels of FusedLayerNorm (external_ops/csrc/layer_norm_cuda.cu) against "
                    "torch.nn.functional.layer_norm and its autograd (float64 reference) on a GPU, and tables "
                    "their bandwidth against PyTorch's kernels and a device-to-device copy. Needs a CUDA build "
                    "of PyTorch and the library built by build.sh (run.sh does both); no Paddle.",
        epilog="exit status: 0 all cases pass, 1 a case fails, 2 bad arguments, 3 no CUDA device, "
               "4 set-up problem (no torch, library missing or not loadable)")
    parser.add_argument("--lib", default=os.environ.get(LIB_ENV),
                        help=f"the .so from build.sh (default: ${LIB_ENV})")
    parser.add_argument("--quick", action="store_true", help="the smaller sweep (about 100 cases, 2 x 2 shapes)")
    parser.add_argument("--out", action="append", default=[], type=_out_path, metavar="FILE.json|FILE.md",
                        help="also write the results there (repeatable); .md lists every case")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--skip-bandwidth", action="store_true", help="correctness only")
    parser.add_argument("--skip-correctness", action="store_true", help="bandwidth only")
    parser.add_argument("--no-torch-check", action="store_true",
                        help="do not also check PyTorch's own kernels against the reference (information only)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing (default 5)")
    parser.add_argument("--repeats", type=int, default=25, help="timed calls, median reported (default 25)")
    parser.add_argument("--build-info", default="", help="how the library was built (run.sh fills it in)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log failures only, not every case")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        import torch
    except ImportError as exc:
        log.error("PyTorch is not importable (%s); the check needs a CUDA build of torch", exc)
        return EXIT_SETUP
    from .env import cuda_device_problem, describe

    problem = cuda_device_problem(torch, args.device)
    if problem:
        log.error("no CUDA device: %s", problem)
        return EXIT_NO_GPU
    if not args.lib or not os.path.isfile(args.lib):
        log.error("the check's library %s was not found; build it with "
                  "`bash external_ops/gpu_check/build.sh OUT.so` and pass --lib OUT.so (or use run.sh)",
                  repr(args.lib) if args.lib else f"(--lib / ${LIB_ENV})")
        return EXIT_SETUP
    from .lib import KernelError, LayerNormLibrary

    try:
        lib = LayerNormLibrary(os.path.abspath(args.lib))
        torch.cuda.set_device(args.device)
        lib.set_device(args.device)
    except (OSError, KernelError) as exc:
        log.error("cannot use the library %s: %s", args.lib, exc)
        return EXIT_SETUP
    return run(args, torch, lib, describe(torch, lib, args.device, args.build_info))


def run(args: argparse.Namespace, torch: Any, lib: Any, env: Dict[str, str]) -> int:
    """The sweep and the table, then the report to stdout and files; the exit status."""
    from .correctness import run_cases
    from .timing import measure_all

    device = torch.device("cuda", args.device)
    for key, value in env.items():
        log.info("%s: %s", key, value)
    cases = [] if args.skip_correctness else (quick_cases() if args.quick else full_cases())
    log.info("%d correctness cases", len(cases))
    results = run_cases(lib, cases, device, with_torch=not args.no_torch_check)
    rows: List[bw.BandwidthRow] = []
    if not args.skip_bandwidth:
        shapes = bw.SHAPES_QUICK if args.quick else bw.SHAPES_FULL
        dtypes = bw.DTYPES_QUICK if args.quick else bw.DTYPES_FULL
        rows = measure_all(lib, shapes, dtypes, device, args.warmup, args.repeats)
    sys.stdout.write(text_report(env, results, rows))
    for path in args.out:
        with open(path, "w") as f:
            f.write(render(path, env, results, rows))
        log.info("wrote %s", path)
    failed = sum(not r.passed for r in results)
    if failed:
        log.error("%d of %d cases FAILED", failed, len(results))
        return EXIT_MISMATCH
    if not args.skip_bandwidth and not rows:
        log.error("no bandwidth measurement succeeded")
        return EXIT_MISMATCH
    log.info("all %d cases pass", len(results))
    return EXIT_OK
