"""What the entry points print: by default progress, metrics, warnings that matter and where files went; the
chatter of Paddle, PaddleNLP, datasets and setuptools only with `--verbose` (CLI `-v`, scripts `--verbose`, or
PADDLEMIX_EVA_VERBOSE=1).

Library code never calls this: a program importing paddlemix_eva keeps its own logging setup.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from typing import Iterable, Iterator, List, Optional, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)

VERBOSE_ENV = "PADDLEMIX_EVA_VERBOSE"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: warnings third-party imports emit on every run (not about the user's data or model)
NOISE_WARNINGS = (
    r"No ccache found",  # paddle.utils.cpp_extension, imported for the FusedLayerNorm op
    r"Setuptools is replacing distutils",  # _distutils_hack, pulled in by the same import
    r"To copy construct from a tensor",  # paddle.to_tensor(tensor) inside Paddle's own utilities
)
#: loggers that report library internals at INFO (e.g. datasets' "PyTorch version ... available")
QUIET_LOGGERS = ("datasets", "PaddleNLP", "paddle")


def silence_import_noise() -> None:
    """Called at `import paddlemix_eva`: the warnings and INFO lines that importing Paddle, its C++ extension tools
    and PaddleNLP's `datasets` print on every run, whatever the program does, are hidden unless verbose. Only
    those messages (matched by text) and only a logger nobody configured are touched."""
    if verbose_requested():
        return
    for message in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    quiet = logging.getLogger("datasets")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)


def verbose_requested(argv: Optional[List[str]] = None) -> bool:
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0") or bool(argv and ("--verbose" in argv or "-v" in argv))


class _WarningsOnly(logging.Filter):
    """Keeps a logger's warnings and errors. A filter, not a level: PaddleNLP resets its logger's level to DEBUG
    when it is imported, which may happen after this is installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_WARNINGS_ONLY = _WarningsOnly()


def setup_logging(verbose: bool = False) -> None:
    """Our loggers at INFO (DEBUG when verbose) on stderr; third-party loggers down to their warnings and their
    import-time warnings hidden unless verbose."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT, stream=sys.stderr,
                        force=True)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # child processes (DataLoader workers, launched ranks) follow
        return
    silence_import_noise()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).addFilter(_WARNINGS_ONLY)


def third_party_quiet() -> bool:
    """Whether `setup_logging` hid PaddleNLP's INFO lines (then the trainers log their metrics themselves)."""
    return _WARNINGS_ONLY in logging.getLogger("PaddleNLP").filters


@contextlib.contextmanager
def quiet_paddlenlp() -> Iterator[None]:
    """PaddleNLP's own report of a load we have already checked and reported key by key (missing / unexpected /
    newly initialised weights) is hidden, unless verbose."""
    paddlenlp = logging.getLogger("PaddleNLP")
    level = paddlenlp.level
    if not verbose_requested() and paddlenlp.getEffectiveLevel() < logging.ERROR:
        paddlenlp.setLevel(logging.ERROR)
    try:
        yield
    finally:
        paddlenlp.setLevel(level)


#: seconds between progress lines when stderr is not a terminal (a log file, CI)
PROGRESS_LOG_INTERVAL = 30.0


def progress(items: Iterable[T], desc: str, total: Optional[int] = None, unit: str = "it") -> Iterator[T]:
    """`items`, showing progress of a long loop: a tqdm bar on a terminal, else a log line every
    `PROGRESS_LOG_INTERVAL` seconds (so a run logged to a file is never silent for hours)."""
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr)
        return
    last = start = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= PROGRESS_LOG_INTERVAL:
            last = now
            of = f"/{total}" if total else ""
            logger.info("%s: %d%s %s (%.0f s)", desc, done, of, unit, now - start)


@contextlib.contextmanager
def native_output_hidden() -> Iterator[None]:
    """What C++ code writes straight to the process's stdout / stderr (fds 1 and 2: glog warnings of the PIR
    tracer, oneDNN pass diagnostics such as `ReduceMeanCheckIfOneDNNSupport`) is dropped for the duration, unless
    verbose; Python exceptions raised inside still carry their messages."""
    if verbose_requested():
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def run_logged(cmd: List[str], log_path: str) -> None:
    """Run one step of a multi-step job (the demos run the example scripts this way) with its whole output in
    `log_path`; a failing step raises with its exit status and the end of that log."""
    import subprocess

    logging.getLogger(__name__).info("$ %s", " ".join(cmd))
    with open(log_path, "w") as log:
        proc = subprocess.run(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"step failed (exit {proc.returncode}); last output of {log_path}:\n{tail}")
