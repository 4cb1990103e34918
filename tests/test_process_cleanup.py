"""Every process a run starts ends with it: DataLoader workers and launched ranks, whether the run exits normally,
through the ranks' exit without teardown (`runtime.leave_distributed_run`), a SIGTERM or a SIGKILL of the process
that started them; and only the rank that writes the model says so.

A run's processes are found by a marker in their environment (`/proc/PID/environ`, inherited by the launcher's
ranks and by forked workers), so nothing of another test or user can be mistaken for one of them."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Dict, List

import numpy as np
import pytest
from PIL import Image

from paddlemix_eva.utils import processes

from launch import script_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
MARKER = "PADDLEMIX_EVA_TEST_RUN"
#: how long the kernel may take to deliver death signals and the processes to go
GRACE_S = 8.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


# ----------------------------------------------------------------------------------- processes
def marked_processes(token: str) -> Dict[int, str]:
    """pid -> command line of every live process whose environment carries MARKER=token (zombies have none)."""
    needle = f"{MARKER}={token}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return found


def survivors(token: str, grace: float = GRACE_S) -> Dict[int, str]:
    """The marked processes still alive after up to `grace` s; any found are SIGKILLed (after being reported), so
    a failing test leaves nothing behind either."""
    deadline = time.monotonic() + grace
    left = marked_processes(token)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked_processes(token)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


class PidWatch:
    """Collects the pids of a run's processes while it runs (they cannot be found by the marker once ended)."""

    def __init__(self, token: str):
        self.token, self.pids, self._stop = token, set(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.3):
            self.pids.update(marked_processes(self.token))

    def stop(self) -> set:
        self._stop.set()
        self._thread.join()
        return self.pids


def shared_batches_of(pids) -> List[str]:
    """Paddle's shared-memory batch files (`/dev/shm/paddle_<creator pid>_...`) made by any of `pids`; any found are
    removed (after being reported)."""
    prefixes = tuple(f"paddle_{pid}_" for pid in pids)
    found = [name for name in os.listdir("/dev/shm") if prefixes and name.startswith(prefixes)]
    for name in found:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass
    return found


def marked_env(token: str) -> Dict[str, str]:
    return dict(os.environ, **{MARKER: token})


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before {what}: "
                                 + open(log_path, errors="replace").read()[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s: " + open(log_path, errors="replace").read()[-3000:])
        time.sleep(0.2)


# ----------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny inputs of the three training scripts: an image folder, a small MIM model (the fine-tuning start), a
    tiny MIM composite (student + teacher), a tiny EVA-CLIP and a captioned image list."""
    from test_clip_recipe import tiny_clip
    from test_evaclip_training import COLOURS, TEMPLATE, _colour_image
    from test_mim_pretrain import tiny_config

    from paddlemix_eva.models import EVA02VisionTransformerForMIM, EVA02VisionTransformerForMIMConfig

    root = tmp_path_factory.mktemp("cleanup")
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        os.makedirs(root / "images" / cls)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(root / "images" / cls / f"{i}.png")
    config = EVA02VisionTransformerForMIMConfig(image_size=56, patch_size=14, embed_dim=64, layers=1, num_heads=1,
                                                mlp_ratio=2.6667, qkv_bias=True, swiglu=True, predict_feature_dim=16)
    EVA02VisionTransformerForMIM(config).save_pretrained(str(root / "mim"))
    tiny_config().save_pretrained(str(root / "composite"))
    tiny_clip().save_pretrained(str(root / "clip"))
    records = []
    os.makedirs(root / "pairs")
    for i in range(16):
        name = sorted(COLOURS)[i % 4]
        _colour_image(COLOURS[name], rng).save(root / "pairs" / f"{i}.png")
        records.append({"image": f"pairs/{i}.png", "caption": TEMPLATE.format(name), "image_id": f"img{i}"})
    (root / "pairs.json").write_text(json.dumps(records))
    return root


COMMON = ["--save_steps", "2", "--logging_steps", "1", "--seed", "0", "--disable_tqdm", "true",
          "--tensorboard", "false", "--dataloader_num_workers", "2"]


def script_args(data, kind: str, out, steps: int = 2) -> List[str]:
    """(script, arguments) of a short run of `kind` ("finetune", "mim", "clip") on `data`, with 2 DataLoader
    workers per process."""
    common = [*COMMON, "--output_dir", str(out), "--max_steps", str(steps)]
    if kind == "finetune":
        return [os.path.join(EXAMPLES, "eva02", "run_eva02_finetune_dist.py"), "--model", str(data / "mim"),
                "--data_path", str(data / "images"), "--per_device_train_batch_size", "2", "--warmup_steps", "1",
                "--save_epochs", "0", *common]
    if kind == "mim":
        return [os.path.join(EXAMPLES, "eva02", "run_eva02_pretrain_dist.py"), "--do_train", "--model",
                str(data / "composite"), "--data_path", str(data / "images"), "--per_device_train_batch_size", "2",
                "--save_epochs", "0", *common]
    return [os.path.join(EXAMPLES, "evaclip", "run_pretrain_dist.py"), "--model", str(data / "clip"),
            "--train_data", str(data / "pairs.json"), "--per_device_train_batch_size", "4", "--warmup_steps", "1",
            *common]


# ------------------------------------------------------------------------------------ the tests
def test_a_worker_dies_with_the_process_that_iterates_its_loader():
    """The mechanism itself, in one forked child: the death signal the kernel holds is the one asked for."""
    init = processes.worker_init_fn()  # made in the parent, as a DataLoader's is
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what the kernel holds, then leaves without any teardown
        os.close(read)
        init(0)
        os.write(write, str(processes.death_signal()).encode())
        os._exit(0)
    os.close(write)
    reported = os.read(read, 16).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert reported == str(int(signal.SIGKILL))
    assert processes.death_signal() == 0  # the test process itself is left alone
    assert processes.end_with_launcher() is False  # not a launched rank: a run from a shell does not end with it


@pytest.mark.slow
def test_launched_runs_leave_no_process_behind(data, tmp_path):
    """Fine-tuning, MIM pre-training and EVA-CLIP on 2 launched processes with 2 DataLoader workers each, all three
    at once (a loaded machine), twice: every launch exits 0 (the ranks' exit without teardown keeps avoiding the
    gloo teardown race that aborted ~1 run in 6 here), no process of any run outlives its launcher, and none of
    the batches its workers put in shared memory stays there. Only rank 0, which writes the model, logs where it
    was saved."""
    for wave in range(2):
        runs = {}
        try:
            _launch_and_check(data, tmp_path, wave, runs)
        finally:  # a failed check leaves no run of the wave behind either
            for proc, token, _, watch in runs.values():
                survivors(token, grace=0)
                shared_batches_of(watch.stop())


def _launch_and_check(data, tmp_path, wave: int, runs: dict) -> None:
    """Starts the three launches of `wave` (recorded in `runs`), then checks each as it ends."""
    for kind in ("finetune", "mim", "clip"):
        token = uuid.uuid4().hex
        out, logs = tmp_path / f"{kind}{wave}", tmp_path / f"{kind}{wave}_log"
        script, *args = script_args(data, kind, out)
        proc = subprocess.Popen(script_command(script, args, 2, str(logs)), env=marked_env(token),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(tmp_path))
        runs[kind] = (proc, token, logs, PidWatch(token))
    for kind, (proc, token, logs, watch) in runs.items():
        output = proc.communicate(timeout=600)[0].decode(errors="replace")
        pids = watch.stop()
        rank0 = (logs / "workerlog.0").read_text(errors="replace")
        assert proc.returncode == 0, f"{kind} (wave {wave}): {output[-2000:]}\n{rank0[-3000:]}"
        left = survivors(token)
        assert not left, f"{kind} (wave {wave}) left processes behind: {left}"
        assert len(pids) >= 7, pids  # the launcher, 2 ranks, 2 workers each
        assert not shared_batches_of(pids), f"{kind} (wave {wave}) left shared memory behind"
        if kind == "finetune":
            rank1 = (logs / "workerlog.1").read_text(errors="replace")
            assert f"model saved in {tmp_path / f'finetune{wave}'}" in rank0
            assert "fine-tuning done" in rank1 and "saved in" not in rank1, rank1[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("target, signum", [("run", signal.SIGKILL), ("run", signal.SIGTERM),
                                            ("launcher", signal.SIGKILL)],
                         ids=["SIGKILL-run", "SIGTERM-run", "SIGKILL-launcher"])
def test_a_killed_run_takes_its_workers_along(data, tmp_path, target, signum):
    """A fine-tuning run killed while it trains (alone, or the launcher of 2 ranks): its DataLoader workers (and
    ranks) are gone within a few seconds."""
    token = uuid.uuid4().hex
    script, *args = script_args(data, "finetune", tmp_path / "out", steps=10_000)
    nproc = 2 if target == "launcher" else 1
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(script_command(script, args, nproc, str(tmp_path / "logs")), env=marked_env(token),
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        step_log = tmp_path / "logs" / "workerlog.0" if nproc > 1 else log_path
        expected = 3 if nproc == 1 else 1 + nproc * 3  # the launcher, and per training process: it and 2 workers
        wait_for(lambda: os.path.exists(step_log) and "step 2/" in step_log.read_text(errors="replace")
                 and len(marked_processes(token)) >= expected, 300, "training step with workers", proc, log_path)
        os.kill(proc.pid, signum)
        proc.wait(timeout=60)
    finally:
        left = survivors(token)
    assert not left, f"left behind after {signal.Signals(signum).name} of the {target}: {left}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_two_node_run_leaves_nothing_behind_and_only_the_writer_says_so(data, tmp_path):
    """Fine-tuning as two "nodes" of one process each on 127.0.0.1 (one launcher per node, as on two machines, one
    job id), 2 DataLoader workers per rank: both launchers exit 0, no process of either node outlives them, and
    only node 0, which writes the model, logs where it was saved (node 1 logged it for a folder it never wrote)."""
    port, token = _free_port(), uuid.uuid4().hex
    script, *args = script_args(data, "finetune", tmp_path / "out")
    launchers, watch = [], PidWatch(token)
    try:
        for node in (0, 1):
            command = [sys.executable, "-m", "paddle.distributed.launch", "--master", f"127.0.0.1:{port}",
                       "--nnodes", "2", "--rank", str(node), "--nproc_per_node", "1",
                       "--job_id", f"twonodes{token[:8]}", "--log_dir", str(tmp_path / f"logs{node}"), script, *args]
            launchers.append(subprocess.Popen(command, env=marked_env(token), stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, cwd=str(tmp_path)))
        outputs = [proc.communicate(timeout=240)[0].decode(errors="replace") for proc in launchers]
        pids = watch.stop()
        # every file the node's launcher wrote (its own log and its rank's; the names follow --job_id)
        node_logs = ["".join(p.read_text(errors="replace") for p in sorted((tmp_path / f"logs{node}").iterdir())
                             if p.is_file()) for node in (0, 1)]
        for node, proc in enumerate(launchers):
            assert proc.returncode == 0, f"node {node}: {outputs[node][-2000:]}\n{node_logs[node][-3000:]}"
        assert not survivors(token), "a node left processes behind"
        assert len(pids) >= 6, pids  # per node: the launcher, its rank and the rank's 2 workers
        assert f"model saved in {tmp_path / 'out'}" in node_logs[0], node_logs[0][-2000:]
        assert "fine-tuning done" in node_logs[1] and "saved in" not in node_logs[1], node_logs[1][-2000:]
    finally:
        for proc in launchers:
            if proc.poll() is None:
                proc.kill()
        survivors(token, grace=0)
