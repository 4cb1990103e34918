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


def exit_on_bad_input(main: Callable[[], T]) -> T:
    """Run an entry point; a bad-input error is logged as one line and the process exits with status 2."""
    try:
        return main()
    except BAD_INPUT_ERRORS as err:
        logger.error("%s", message_of(err))
        sys.exit(BAD_INPUT_STATUS)
