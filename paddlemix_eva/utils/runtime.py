"""Process-level CPU settings that must be in place before Paddle is first imported.

Paddle's bundled MKL (2019.0.5) dispatches to its slow generic code path on AMD CPUs; `MKL_DEBUG_CPU_TYPE=5`
selects the AVX2 path instead (measured on an AMD host: matmul ~30 -> ~85 GFLOP/s). MKL reads the variable once,
when Paddle loads it, so it only helps if `paddlemix_eva` is imported first; a value the user set is left alone.
On Intel CPUs the variable is not set: there it would *downgrade* MKL from its AVX-512 path to AVX2 (checked
with MKL_VERBOSE=1 on a Xeon with AVX-512).
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
from typing import Iterator

logger = logging.getLogger(__name__)


def cpuinfo_field(field: str) -> str:
    """The first `field` value of /proc/cpuinfo ('vendor_id', 'model name', ...), or '' where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_vendor() -> str:
    """The CPU vendor string ('AuthenticAMD', 'GenuineIntel', ...) or '' when it cannot be read."""
    vendor = cpuinfo_field("vendor_id")
    if vendor:
        return vendor
    processor = platform.processor().upper()
    if "AMD" in processor:
        return "AuthenticAMD"
    if "INTEL" in processor:
        return "GenuineIntel"
    return ""


def require_paddle() -> None:
    """PaddlePaddle is not an install requirement (its CPU and CUDA wheels are different distributions), so say
    how to get it instead of failing at the first model built."""
    import importlib.util

    if importlib.util.find_spec("paddle") is None:
        raise ImportError(
            "paddlemix_eva needs PaddlePaddle, which is not installed: `pip install -r requirements-cpu.txt` (CPU) "
            "or `pip install -r requirements-gpu.txt` (CUDA; pick the wheel index of your CUDA version there), "
            "or `make install [DEVICE=gpu]`"
        )


#: the thread variables as the user's environment had them before Paddle's import (which sets OMP_NUM_THREADS=1)
_thread_env_at_import = {}


def configure_cpu_backend() -> None:
    if "paddle" not in sys.modules:
        _thread_env_at_import.update({name: os.environ.get(name, "") for name in THREAD_ENVS})
    if "paddle" in sys.modules:
        if "MKL_DEBUG_CPU_TYPE" not in os.environ and cpu_vendor() == "AuthenticAMD":
            logger.debug("paddle was imported before paddlemix_eva; MKL_DEBUG_CPU_TYPE cannot take effect any more")
        return
    if cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


def configure_training_runtime() -> None:
    """CPU settings for training processes (the training entry points call this; both are process-wide).

    - View ops (transpose, unbind, slice) materialise their result: with Paddle's stride kernels on (its default),
      every op consuming a strided view takes a slow path on CPU, forward and backward. A training step of the
      demo's 6-block EVA-02 (width 192, batch 32): 0.74 s -> 0.54 s. Code that writes through a view into its base
      tensor would behave differently.
    - Paddle's eager CPU kernels use all cores instead of its default of one thread (0.54 s -> 0.44 s), unless
      FLAGS_paddle_num_threads is set.
    """
    import paddle

    if paddle.is_compiled_with_cuda():
        return
    paddle.set_flags({"FLAGS_use_stride_kernel": False})
    if "FLAGS_paddle_num_threads" not in os.environ:
        set_cpu_threads(os.cpu_count() or 1)


#: the last thread count given to `set_cpu_threads` (Paddle has no getter)
_cpu_threads = None
#: environment variables that choose the eager CPU thread count; any of them set means "leave it alone"
THREAD_ENVS = ("PADDLEMIX_EVA_CPU_THREADS", "FLAGS_paddle_num_threads", "OMP_NUM_THREADS")


def use_all_cores_by_default() -> None:
    """Paddle's eager CPU kernels run on one thread unless told otherwise, which made `get_model(...)(x)` several
    times slower than the same model in timm. On the first model built (and the first inference call) this sets
    them to every core, logged once, unless the thread count was chosen: `PADDLEMIX_EVA_CPU_THREADS` (a number,
    or 0 for Paddle's own default), `FLAGS_paddle_num_threads`, `OMP_NUM_THREADS`, or an earlier
    `set_cpu_threads`. CUDA builds are left alone."""
    import paddle

    if paddle.is_compiled_with_cuda():
        return
    _tune_allocator_by_default()
    if _cpu_threads is not None:
        return
    chosen = {name: value for name, value in _thread_env_at_import.items() if value}
    chosen.update({name: os.environ[name] for name in THREAD_ENVS[:2] if os.environ.get(name, "")})
    if chosen:
        requested = chosen.get("PADDLEMIX_EVA_CPU_THREADS")
        if requested not in (None, "0"):
            set_cpu_threads(int(requested))
        return
    threads = os.cpu_count() or 1
    set_cpu_threads(threads)
    logger.info("Paddle eager CPU kernels: %d threads (all cores; PADDLEMIX_EVA_CPU_THREADS=N or "
                "paddlemix_eva.utils.runtime.set_cpu_threads(N) chooses)", threads)


def current_cpu_threads() -> int:
    """Threads of Paddle's eager CPU kernels now: the last `set_cpu_threads` value, else Paddle's default."""
    if _cpu_threads is not None:
        return _cpu_threads
    return int(os.environ.get("FLAGS_paddle_num_threads", "1") or 1)


@contextlib.contextmanager
def keeps_eager_threads() -> Iterator[None]:
    """Paddle Inference predictors reset the eager kernels' thread setting when they are built and run (an EVA-02
    Ti forward in the same process then ran 35 -> 47 ms): the setting chosen here is put back afterwards."""
    try:
        yield
    finally:
        if _cpu_threads is not None:
            from paddlemix_eva.utils.compat import set_eager_threads

            set_eager_threads(_cpu_threads)


def set_cpu_threads(num_threads: int) -> None:
    """Threads of Paddle's eager CPU kernels (MKL / OpenMP). Paddle's own default is 1 (`FLAGS_paddle_num_threads`).

    Paddle Inference predictors take their thread count from their config instead
    (see `paddlemix_eva.inference_backend.CPUPredictor`).
    """
    from paddlemix_eva.utils.compat import set_eager_threads

    global _cpu_threads
    set_eager_threads(num_threads)
    _cpu_threads = int(num_threads)


#: set to 0 to keep glibc's allocator settings (the default raises its mmap / trim thresholds, see below)
TUNE_MALLOC_ENV = "PADDLEMIX_EVA_TUNE_MALLOC"
#: glibc's own environment settings of those thresholds: a user who set one keeps it
GLIBC_MALLOC_ENVS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_allocator_tuned = False
_allocator_decided = False


def allocator_tuned() -> bool:
    """Whether this process raised glibc's malloc thresholds (see `_tune_allocator_by_default`)."""
    return _allocator_tuned


def _tune_allocator_by_default() -> None:
    """With the first model built: `tune_glibc_malloc()` (logged once), unless PADDLEMIX_EVA_TUNE_MALLOC=0 or the
    user tuned glibc's allocator through its own environment variables. Measured on 2 cores: EVA-02 S@336 batch 8
    eager forward 1.43 s -> 1.04 s, the fused linear's [2056, 576] output 2.4 ms -> 1.25 ms."""
    global _allocator_tuned, _allocator_decided
    if _allocator_decided:
        return
    _allocator_decided = True
    declined = os.environ.get(TUNE_MALLOC_ENV, "1") in ("0", "false", "False")
    if declined or any(os.environ.get(name) for name in GLIBC_MALLOC_ENVS):
        return
    _allocator_tuned = tune_glibc_malloc()
    if _allocator_tuned:
        logger.info("glibc malloc: freed tensor buffers stay in the heap (mmap threshold 32 MiB; %s=0 keeps glibc's "
                    "defaults)", TUNE_MALLOC_ENV)


#: glibc mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_glibc_malloc(mmap_threshold: int = 32 * 1024 * 1024, trim_threshold: int = 256 * 1024 * 1024) -> bool:
    """Keep freed tensor buffers in the process heap instead of returning them to the OS (Linux/glibc; on by
    default from the first model built, see `_tune_allocator_by_default`).

    By default glibc serves every allocation above a (dynamic) threshold with a fresh mmap and unmaps it on free,
    so each large intermediate tensor of a CPU forward pays page faults and kernel page zeroing again. Raising
    the mmap threshold (glibc's maximum is 32 MiB on 64-bit) and the trim threshold makes them reuse heap memory.
    This speeds up any CPU framework in the process (Paddle eager, Paddle Inference and PyTorch alike) at the
    price of a process that holds on to its peak heap. Returns False where mallopt is unavailable.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    except (OSError, AttributeError):
        return False
    if not ok:
        logger.warning("mallopt rejected mmap_threshold=%d / trim_threshold=%d", mmap_threshold, trim_threshold)
    return ok


def leave_distributed_run(status: int = 0) -> None:
    """End a finished rank of a multi-process run: all ranks meet at a barrier, flush their logs and exit at once,
    without the interpreter's teardown. Under `paddle.distributed.launch` on CPU (gloo), a normal exit lets one
    rank's C++ teardown of the gloo context race with its peer's, and about one run in six on a loaded 2-core
    machine then died with SIGABRT after everything was saved (the launcher reported exit code -6). Skipping the
    teardown also skips the DataLoader's and multiprocessing's ending of worker processes, so they are ended here
    first (`processes.end_child_processes`). A no-op in a single process."""
    import paddle.distributed as dist

    from paddlemix_eva.utils.processes import end_child_processes

    if not dist.is_initialized() or dist.get_world_size() <= 1:
        return
    dist.barrier()
    end_child_processes()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
