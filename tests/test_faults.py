"""Faults during training: a kill inside a checkpoint write, a file system that refuses the write, non-finite
losses; and the schedules and gradient clipping checked against their formulas."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from paddlemix_eva.trainer.base import EVATrainer, EVATrainingArguments

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "distributed", "tiny_run.py")


def _run(out_dir, *extra, nproc=1, check=True):
    command = [sys.executable, DRIVER, str(out_dir), *extra]
    if nproc > 1:
        command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
                   str(out_dir) + "_log", DRIVER, str(out_dir), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=os.path.dirname(str(out_dir)))
    output = result.stdout + result.stderr
    if nproc > 1 and os.path.isdir(str(out_dir) + "_log"):
        output += "".join(open(os.path.join(str(out_dir) + "_log", f)).read()
                          for f in sorted(os.listdir(str(out_dir) + "_log")) if f.startswith("workerlog"))
    if check:
        assert result.returncode == 0, output[-4000:]
    return result.returncode, output


def _params(out_dir, step):
    with open(os.path.join(str(out_dir), f"params-{step}.json")) as f:
        return {k: np.asarray(v) for k, v in json.load(f).items()}


def _losses(checkpoint):
    with open(os.path.join(str(checkpoint), "trainer_state.json")) as f:
        return {e["step"]: e["loss"] for e in json.load(f)["log_history"] if "loss" in e}


# ------------------------------------------------------------------------------------------- kills
@pytest.mark.slow
@pytest.mark.parametrize("filename", ["model_state.pdparams", "optimizer.pdopt"])
def test_a_kill_inside_a_checkpoint_write_keeps_the_previous_one_and_resumes_from_it(tmp_path, filename):
    reference = tmp_path / "reference"
    _run(reference)
    killed = tmp_path / "killed"
    code, output = _run(killed, "--kill_in_save", f"8:{filename}", check=False)
    assert code == -9, output[-3000:]  # SIGKILL, half of the file written
    staging = killed / ".staging-checkpoint-8" / "checkpoint-8" / filename
    assert staging.is_file() and not (killed / "checkpoint-8").exists()
    assert (killed / "checkpoint-4" / "trainer_state.json").is_file()
    _run(killed, "--resume")  # picks the last complete checkpoint, checkpoint-4
    assert (killed / "checkpoint-8").is_dir() and not (killed / ".staging-checkpoint-8").exists()
    expected, resumed = _losses(reference / "checkpoint-8"), _losses(killed / "checkpoint-8")
    assert sorted(resumed) == list(range(1, 9))
    for step in range(5, 9):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-9), step
    for key, value in _params(reference, 8).items():
        np.testing.assert_allclose(_params(killed, 8)[key], value, rtol=1e-6, atol=1e-9, err_msg=key)


def test_a_refused_checkpoint_write_stops_the_run_clearly_and_leaves_no_partial_checkpoint(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse (EFBIG) the write of checkpoint-8 after checkpoint-4 was written."""
    out = tmp_path / "run"
    code, output = _run(out, "--fsize_limit_after", "5:2000", check=False)
    assert code == 1, output[-3000:]
    assert "checkpoint-8 could not be written" in output and "checkpoint-4 is intact" in output
    assert "--resume_from_checkpoint" in output and "Traceback" not in output
    assert not (out / "checkpoint-8").exists() and not (out / ".staging-checkpoint-8").exists()
    _run(out, "--resume")
    assert (out / "checkpoint-8" / "trainer_state.json").is_file()


# ------------------------------------------------------------------------------------- NaN losses
def test_a_nan_loss_skips_its_step_and_training_goes_on(tmp_path):
    out = tmp_path / "run"
    _, output = _run(out, "--nan_loss", "3")
    assert output.count("non-finite loss; the update is skipped") == 1
    before, after = _params(out, 2), _params(out, 3)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)  # no update at all, not even decay
    assert not np.array_equal(_params(out, 4)["fc1.weight"], after["fc1.weight"])
    assert all(np.isfinite(v).all() for v in _params(out, 8).values())
    assert sorted(_losses(out / "checkpoint-8")) == list(range(1, 9))


def test_nan_losses_in_a_row_stop_the_run_before_anything_nan_is_saved(tmp_path):
    out = tmp_path / "run"
    code, output = _run(out, "--nan_loss", "5,6,7", check=False)
    assert code == 1, output[-3000:]
    assert "training stopped at step 7: the loss was not finite in 3 steps in a row (steps [5, 6, 7])" in output
    assert "Traceback" not in output and not (out / "checkpoint-8").exists()
    assert not (out / "model_state.pdparams").exists()
    from paddlemix_eva.utils.checkpoint import read_state_dict

    saved = read_state_dict(str(out / "checkpoint-4" / "model_state.pdparams"))
    assert all(np.isfinite(v).all() for v in saved.values())


@pytest.mark.slow
def test_a_nan_loss_on_one_rank_skips_the_step_on_both(tmp_path):
    """The decision is agreed across ranks: rank 1 alone sees NaN, neither rank hangs in the gradient all-reduce,
    and both keep identical parameters."""
    out = tmp_path / "run"
    _, output = _run(out, "--nan_loss", "3@1", nproc=2)
    assert "non-finite loss; the update is skipped" in output
    before, after = _params(out, 2), _params(out, 3)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert all(np.isfinite(v).all() for v in _params(out, 8).values())


# -------------------------------------------------------------------------- schedules vs formulas
class DecayProbe(nn.Layer):
    """`probe` gets a zero gradient, so AdamW changes it only by decoupled weight decay: p <- p (1 - lr_t wd_t),
    which exposes the learning rate and weight decay of every step. `fit` learns something meanwhile."""

    def __init__(self):
        super().__init__()
        self.probe = self.create_parameter([4, 4], default_initializer=nn.initializer.Constant(1.0))
        self.fit = nn.Linear(4, 1)

    def forward(self, x, labels):
        return ((self.fit(x) - labels) ** 2).mean() + (self.probe * 0.0).sum()


class Samples(paddle.io.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        x = np.full([4], i / 32.0, np.float32)
        return {"x": x, "labels": x[:1]}


def expected_lr(step, base, warmup_lr, warmup, final, total):
    if step < warmup:
        return warmup_lr + (base - warmup_lr) * step / warmup
    return final + (base - final) * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2


def expected_wd(step, start, end, total):
    return end + (start - end) * (1 + math.cos(math.pi * step / total)) / 2


def test_learning_rate_and_weight_decay_follow_their_formulas_step_by_step(tmp_path):
    total, warmup = 12, 4
    args = EVATrainingArguments(output_dir=str(tmp_path), max_steps=total, warmup_steps=warmup, warmup_lr=0.01,
                                learning_rate=0.1, min_lr=0.002, weight_decay=0.5, weight_decay_end=0.05,
                                per_device_train_batch_size=4, logging_steps=1, save_strategy="no",
                                tensorboard=False, disable_tqdm=True, dataloader_num_workers=0)
    paddle.seed(0)
    model = DecayProbe()
    probe = []

    from paddlenlp.trainer import TrainerCallback

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            probe.append(float(model.probe[0, 0]))

    trainer = EVATrainer(model=model, args=args, train_dataset=Samples(), callbacks=[Record()])
    trainer.train()
    value = 1.0
    for step in range(total):
        value *= 1 - expected_lr(step, 0.1, 0.01, warmup, 0.002, total) * expected_wd(step, 0.5, 0.05, total)
        assert probe[step] == pytest.approx(value, rel=1e-5), step


def test_gradient_clipping_scales_the_global_norm_to_max_grad_norm(tmp_path):
    """One AdamW step moves each weight by lr * g / (|g| + eps): with eps = 1 the step shows the gradient's size,
    so the clipped gradient g * c / ||g|| is visible against the unclipped one."""
    def one_step(max_grad_norm):
        paddle.seed(0)
        model = DecayProbe()
        args = EVATrainingArguments(output_dir=str(tmp_path / str(max_grad_norm)), max_steps=1, learning_rate=0.01,
                                    weight_decay=0.0, adam_epsilon=1.0, max_grad_norm=max_grad_norm,
                                    per_device_train_batch_size=32, save_strategy="no", tensorboard=False,
                                    disable_tqdm=True, dataloader_num_workers=0)
        start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        batch = Samples()
        x = paddle.to_tensor(np.stack([batch[i]["x"] for i in range(32)]))
        y = paddle.to_tensor(np.stack([batch[i]["labels"] for i in range(32)]))
        model(x, y).backward()
        grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
        model.clear_gradients()
        trainer = EVATrainer(model=model, args=args, train_dataset=batch)
        trainer.train()
        moved = {k: start[k] - v.numpy() for k, v in model.state_dict().items()}
        return grads, moved, trainer.grad_norm.value

    grads, unclipped, norm = one_step(0.0)
    assert norm == pytest.approx(math.sqrt(sum(float((g ** 2).sum()) for g in grads.values())), rel=1e-5)
    limit = norm / 4
    _, clipped, _ = one_step(limit)
    for key, g in grads.items():
        np.testing.assert_allclose(unclipped[key], 0.01 * g / (np.abs(g) + 1.0), rtol=1e-4, atol=1e-9)
        g_clipped = g * limit / norm
        np.testing.assert_allclose(clipped[key], 0.01 * g_clipped / (np.abs(g_clipped) + 1.0), rtol=1e-4, atol=1e-9)
    assert np.abs(clipped["fit.weight"]).max() < 0.5 * np.abs(unclipped["fit.weight"]).max()
