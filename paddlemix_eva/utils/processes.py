"""Every process a run starts ends with it: DataLoader workers, and the ranks `paddle.distributed.launch` starts.

Paddle 3.3.1's multi-process DataLoader forks its workers as daemonic `multiprocessing` children. They are ended
by the iterator's own shutdown (end of an epoch, `__del__`) or by multiprocessing's exit handler, which terminates
daemonic children at interpreter teardown. A parent that ends without teardown skips both: a rank leaving through
`runtime.leave_distributed_run` (`os._exit`), a SIGKILL, a SIGTERM with its default action. The worker's
`ParentWatchDog` never notices: the worker waits for its next indices with `indices_queue.get(5)`, which passes
the 5 s as `block`, not `timeout`, so the read never times out (checked: the orphans sit in `Queue.get` ->
`_recv`), and the pipe never reaches end-of-file because every worker holds its write end too.

So each worker asks the kernel for SIGKILL when its parent goes (`prctl(PR_SET_PDEATHSIG)`, set by the
`worker_init_fn` of every DataLoader the package builds: `bind_workers`, `worker_init_fn`), and a rank started by
`paddle.distributed.launch` asks for SIGTERM when the launcher goes (`end_with_launcher`). The death signal follows
the parent *thread* that forked the child: the package creates DataLoader iterators in the main thread only.
Before `os._exit`, `end_child_processes` also ends the workers still running, so nothing relies on the signal alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import signal
import sys
from typing import Callable, List, Optional

logger = logging.getLogger(__name__)

#: prctl option (linux/prctl.h): the signal this process gets when the thread that forked it ends
PR_SET_PDEATHSIG = 1
#: prctl option (linux/prctl.h): read it back
PR_GET_PDEATHSIG = 2
#: what a launched rank's parent runs (`python -m paddle.distributed.launch ...` or the `fleetrun` script)
LAUNCHER_NAMES = ("paddle.distributed.launch", "fleetrun")

_libc = None


def _prctl() -> Optional[Callable]:
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            return None
    return _libc.prctl


def die_with_parent(signum: int = signal.SIGKILL, parent_pid: Optional[int] = None) -> bool:
    """Ask the kernel to send `signum` to this process when the thread that forked it ends, however it ends
    (Linux; returns False elsewhere or when refused). When `parent_pid` is given and this process's parent is no
    longer that process (it ended before the request), the process exits at once."""
    prctl = _prctl()
    if prctl is None or prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)
    return True


def death_signal() -> int:
    """The signal this process gets when its parent ends (0: none), as the kernel holds it."""
    prctl = _prctl()
    if prctl is None:
        return 0
    value = ctypes.c_int(0)
    if prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) != 0:
        return 0
    return value.value


class WorkerInit:
    """A DataLoader `worker_init_fn`: the worker dies with the process that iterates the loader (SIGKILL), then
    runs the `worker_init_fn` it wraps. A class, not a closure, so the loader still pickles (spawn start method)."""

    def __init__(self, then: Optional[Callable[[int], None]] = None):
        self.then = then
        self.parent_pid = os.getpid()

    def __call__(self, worker_id: int) -> None:
        die_with_parent(signal.SIGKILL, self.parent_pid)
        if self.then is not None:
            self.then(worker_id)


def worker_init_fn(then: Optional[Callable[[int], None]] = None) -> WorkerInit:
    """The `worker_init_fn` every DataLoader of the package passes (`then`: one of the caller's, run after)."""
    return then if isinstance(then, WorkerInit) else WorkerInit(then)


def bind_workers(loader):
    """`loader` (a `paddle.io.DataLoader`, e.g. one PaddleNLP's Trainer built) with its workers bound to the
    process that iterates it (`WorkerInit` around its own `worker_init_fn`); returned for chaining."""
    if hasattr(loader, "worker_init_fn"):
        loader.worker_init_fn = worker_init_fn(loader.worker_init_fn)
    return loader


def launched_by_paddle() -> bool:
    """Whether this process is a rank that `paddle.distributed.launch` (or `fleetrun`) started: the launcher's
    environment is set and the parent process runs the launcher."""
    if "PADDLE_TRAINER_ID" not in os.environ:
        return False
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return any(name in parent for name in LAUNCHER_NAMES)


def end_with_launcher() -> bool:
    """In a rank started by `paddle.distributed.launch`: SIGTERM to this rank when the launcher ends, also when the
    launcher is SIGKILLed (it forwards SIGTERM to its ranks itself only when it can run). The rank's DataLoader
    workers follow it (`WorkerInit`). Elsewhere nothing changes: a run started from a shell does not end with it.
    Returns whether the signal was requested."""
    if not launched_by_paddle():
        return False
    return die_with_parent(signal.SIGTERM, os.getppid())


def end_child_processes(timeout: float = 5.0) -> List[int]:
    """End this process's `multiprocessing` children (DataLoader workers) before an exit that skips the
    interpreter's teardown (`os._exit`), which would have ended them. Iterators no longer referenced are
    collected first, so those shut their workers down through Paddle's own protocol; the rest get SIGTERM, then
    SIGKILL after `timeout` s. Returns the pids that had to be signalled."""
    gc.collect()
    children = multiprocessing.active_children()
    if not children:
        return []
    # Paddle's SIGCHLD handler would turn a worker ended here into an error ("DataLoader worker exited unexpectedly")
    with contextlib.suppress(ValueError):  # not the main thread: the handler stays, the ranks exit all the same
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join(1.0)
    pids = [child.pid for child in children]
    removed = remove_shared_batches(pids)
    logger.debug("ended %d DataLoader worker(s) before exit: %s (%d shared-memory batches removed)", len(pids),
                 pids, removed)
    return pids


#: where Paddle's DataLoader workers hand batches to the main process: shm files `paddle_<worker pid>_<n>_<random>`
SHARED_MEMORY_DIR = "/dev/shm"


def remove_shared_batches(worker_pids: List[int]) -> int:
    """Unlink the shared-memory files of batches that the ended workers `worker_pids` made for this process and
    that it will not read any more (Paddle unlinks a batch's file once the main process has read it, and the
    unread ones at interpreter exit, which `os._exit` skips). Returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(SHARED_MEMORY_DIR)
    except OSError:
        return 0
    prefixes = tuple(f"paddle_{pid}_" for pid in worker_pids)
    for name in names:
        if prefixes and name.startswith(prefixes):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SHARED_MEMORY_DIR, name))
                removed += 1
    return removed
