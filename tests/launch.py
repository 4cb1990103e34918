"""Example scripts in subprocesses, alone or under `paddle.distributed.launch`, and the losses they logged."""
import json
import os
import sys
from typing import Dict, List, Optional, Sequence


def script_command(script: str, args: Sequence[str], nproc: int = 1, log_dir: Optional[str] = None) -> List[str]:
    """The command running `script args` in this interpreter, on `nproc` launched processes when nproc > 1
    (their logs in `log_dir`, workerlog.0 being rank 0's)."""
    command = [script, *args]
    if nproc > 1:
        command = ["-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir", str(log_dir),
                   *command]
    return [sys.executable, *command]


def logged_losses(checkpoint_dir) -> Dict[int, dict]:
    """step -> log entry of every logged training loss in a checkpoint's trainer_state.json."""
    with open(os.path.join(str(checkpoint_dir), "trainer_state.json")) as f:
        return {e["step"]: e for e in json.load(f)["log_history"] if "loss" in e}


def run_in_one_process(cases: Sequence[Sequence], env: Optional[dict] = None, cwd: Optional[str] = None,
                       timeout: float = 600) -> List[dict]:
    """{"returncode", "stdout", "stderr"} of each (script, [args]) in `cases`, all run by one interpreter
    (tests/script_driver.py): for command lines that end before any work, where importing Paddle per case would
    cost most of the test's time."""
    import subprocess
    import tempfile

    driver = os.path.join(os.path.dirname(os.path.abspath(__file__)), "script_driver.py")
    with tempfile.TemporaryDirectory() as tmp:
        cases_path, results_path = os.path.join(tmp, "cases.json"), os.path.join(tmp, "results.json")
        with open(cases_path, "w") as f:
            json.dump([[str(script), [str(a) for a in args]] for script, args in cases], f)
        done = subprocess.run([sys.executable, driver, cases_path, results_path], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=timeout)
        assert done.returncode == 0 and os.path.isfile(results_path), done.stderr[-3000:]
        with open(results_path) as f:
            return json.load(f)
