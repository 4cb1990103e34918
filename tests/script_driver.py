"""Runs several command lines of the example scripts in one interpreter, so Paddle and PaddleNLP are imported once
for all of them (about 8 s of CPU each time otherwise). For checks that end before any work: `--help` texts and
refused flags. Each command runs as `python SCRIPT ARGS...` would run it (`runpy`, `__name__ == "__main__"`, the
script's folder first on sys.path), with its exit status, stdout and stderr (logging included) captured.

    python tests/script_driver.py CASES.json RESULTS.json    # CASES: [[script, [arg, ...]], ...]
"""
import contextlib
import io
import json
import os
import runpy
import sys
import traceback
from typing import Dict, List, Sequence


def run_command(script: str, args: Sequence[str]) -> Dict[str, object]:
    """{"returncode", "stdout", "stderr"} of `script args`, run in this interpreter."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved_argv, saved_path = sys.argv, list(sys.path)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv = [script, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:  # a traceback is what the caller checks for
            traceback.print_exc()
            code = 1
        finally:
            sys.argv, sys.path[:] = saved_argv, saved_path
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main(argv: List[str]) -> None:
    cases_path, results_path = argv
    with open(cases_path) as f:
        cases = json.load(f)
    results = [run_command(script, args) for script, args in cases]
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1:])
