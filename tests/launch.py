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
