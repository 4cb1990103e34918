"""Bad input (a wrong path, name, key, value or file format) ends a command with one clear line, not a traceback.

The library raises these errors with messages that name the file, key or value and what was expected; entry
points (the `paddlemix-eva` CLI and the example scripts) run through `exit_on_bad_input`, which logs that message
and exits with status 2. Anything else (a bug) keeps its traceback.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable, TypeVar

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
