"""Bad input (a wrong path, name, key, value or file format) ends a command with one clear line, not a traceback.

The library raises these errors with messages that name the file, key or value and what was expected; entry
points (the `paddlemix-eva` CLI and the example scripts) run through `exit_on_bad_input`, which logs that message
and exits with status 2. Anything else (a bug) keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from typing import Callable, Iterable, Sequence, TypeVar

logger = logging.getLogger("paddlemix_eva")

#: what the library raises for bad input
BAD_INPUT_ERRORS = (KeyError, ValueError, FileNotFoundError, OSError, ImportError)
#: exit status of a command refused for bad input
BAD_INPUT_STATUS = 2

T = TypeVar("T")


def message_of(err: BaseException) -> str:
    """The error's message (a KeyError's without the quotes its str() adds)."""
    return err.args[0] if isinstance(err, KeyError) and err.args else str(err)


#: exit status of a run that stopped itself (diverged, could not write its checkpoint)
STOPPED_STATUS = 1


class TrainingStopped(RuntimeError):
    """A run that cannot go on (a diverged loss, a checkpoint the disk refused); says why and how to resume."""


def exit_on_bad_input(main: Callable[[], T]) -> T:
    """Run an entry point; a bad-input error is logged as one line and the process exits with status 2, a run
    that stopped itself (`TrainingStopped`) likewise with status 1."""
    try:
        return main()
    except BAD_INPUT_ERRORS as err:
        logger.error("%s", message_of(err))
        sys.exit(BAD_INPUT_STATUS)
    except TrainingStopped as err:
        logger.error("%s", err)
        sys.exit(STOPPED_STATUS)


# ------------------------------------------------------------------------------------------- flags
def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (a batch size, top-k): a bad value is a usage error
    naming the flag, before any work."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def check_at_least_one(value: int, flag: str) -> None:
    """A count given as a dataclass field (a batch size): ValueError naming the flag when it is below 1."""
    if value is not None and value < 1:
        raise ValueError(f"{flag} {value}: expected an integer >= 1")


def check_writable_dir(path: str, flag: str = "--output_dir") -> None:
    """Refuse an output directory that cannot be written (an existing file, a path under a file, a read-only
    place) before the run loads a model or spends time on the work whose results would go there."""
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.exists(absolute) and not os.path.isdir(absolute):
        raise ValueError(f"{flag} {path} is a file; expected a directory (existing or to be created)")
    _check_creatable(absolute, flag, path)


def check_writable_file(path: str, flag: str = "--out") -> None:
    """Refuse an output file whose place cannot be written (a directory of that name, a path under a file, a
    read-only folder) before any work."""
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    if os.path.isdir(absolute):
        raise ValueError(f"{flag} {path} is a directory; expected a file name")
    _check_creatable(os.path.dirname(absolute), flag, path)


def _check_creatable(directory: str, flag: str, shown: str) -> None:
    """`directory` exists and takes new files, or can be created: its nearest existing ancestor is a directory
    that takes new files (probed with a temporary file: permission bits say nothing to root or read-only mounts)."""
    import tempfile

    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {shown}: {existing} is a file, so nothing can be created under it")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        why = f" ({err.strerror})" if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC) else ""
        raise ValueError(f"{flag} {shown}: {existing} is not writable{why}") from None


def unknown_flags_message(extras: Sequence[str], known: Iterable[str]) -> str:
    """What a parser says of command-line words it does not know: each unknown flag with the closest known one."""
    import difflib

    known = [k for k in known if k.startswith("--")]
    flags = [word.split("=", 1)[0] for word in extras if word.startswith("-") and len(word) > 1]
    if not flags:
        return f"unexpected argument(s) {' '.join(extras)}"
    parts = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        parts.append(f"unknown flag {flag}" + (f" (did you mean {close[0]}?)" if close else ""))
    return "; ".join(parts)


class OneLineParserMixin:
    """For argparse parsers: unknown flags are refused with the closest known flag, and every usage error is one
    line (`prog: error: ...`, exit status 2) instead of the usage text followed by the error."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(unknown_flags_message(extras, self._option_string_actions))
        return namespace, extras

    def error(self, message: str):
        self.exit(BAD_INPUT_STATUS, f"{self.prog}: error: {with_closest_choice(message)} (--help lists the flags)\n")


def with_closest_choice(message: str) -> str:
    """argparse's "invalid choice: 'predcit' (choose from 'list', 'predict', ...)" with the closest choice named."""
    import difflib
    import re

    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not match:
        return message
    choices = re.findall(r"'([^']*)'", match.group(2))
    close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.6)
    return message + (f"; did you mean {close[0]}?" if close else "")


def check_parsed_arguments(arguments: object) -> None:
    """The checks every script's parsed dataclass gets before its work starts: each `*batch_size` field at least 1,
    an `output_dir` writable (e.g. the evaluation scripts', whose report is written only at the end)."""
    import dataclasses

    if not dataclasses.is_dataclass(arguments):
        return
    for f in dataclasses.fields(arguments):
        value = getattr(arguments, f.name, None)
        if f.name.endswith("batch_size") and isinstance(value, int) and not isinstance(value, bool):
            check_at_least_one(value, f"--{f.name}")
        elif f.name == "output_dir" and isinstance(value, str) and value:
            check_writable_dir(value, "--output_dir")


def read_json_file(path: str):
    """The content of a JSON file; text that is not JSON is a ValueError naming the file, line and column."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid JSON: it is not UTF-8 text") from None


class FlagParser(OneLineParserMixin, argparse.ArgumentParser):
    """argparse with one-line usage errors and, for an unknown flag, the closest known one (subcommands too)."""
