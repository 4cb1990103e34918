"""Shared fixtures. `paddlemix_eva` is imported before paddle so its CPU backend settings apply."""
import os
import sys

import numpy as np
import pytest

import paddlemix_eva  # noqa: F401  (must precede `import paddle`)
import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the digits dataset of `make demo` (examples/eva02/digits_demo.py) serves the learning tests too
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "eva02"))


#: process-wide Paddle flags that library code sets (e.g. `runtime.configure_training_runtime`)
PROCESS_FLAGS = ("FLAGS_use_stride_kernel",)


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Each test leaves the process as it found it: Paddle flags, eager threads, default dtype, dynamic mode,
    environment, kernel switches and logging set-up (an in-process CLI run configures logging), so no test's
    outcome depends on which ran before."""
    import logging

    from paddlemix_eva import layers
    from paddlemix_eva.utils import logs, runtime

    flags, threads = paddle.get_flags(list(PROCESS_FLAGS)), runtime.current_cpu_threads()
    dtype, environ = paddle.get_default_dtype(), dict(os.environ)
    root = logging.getLogger()
    root_state = (list(root.handlers), root.level)
    filters = {name: list(logging.getLogger(name).filters) for name in logs.QUIET_LOGGERS}
    yield
    root.handlers[:], root.level = root_state
    for name, kept in filters.items():
        logging.getLogger(name).filters[:] = kept
    if not paddle.in_dynamic_mode():
        paddle.disable_static()
    if paddle.get_flags(list(PROCESS_FLAGS)) != flags:
        paddle.set_flags(flags)
    if runtime.current_cpu_threads() != threads:
        runtime.set_cpu_threads(threads)
    paddle.set_default_dtype(dtype)
    if dict(os.environ) != environ:
        os.environ.clear()
        os.environ.update(environ)
    for switch in layers.switches.ALL:
        switch.set(None)


@pytest.fixture(autouse=True)
def _seed_and_isolate(_restore_process_state, tmp_path, monkeypatch):
    """Seeded RNGs and a private weight cache per test (never the user's ~/.paddlenlp)."""
    paddle.seed(0)
    np.random.seed(0)
    monkeypatch.setenv("PADDLEMIX_EVA_CACHE", str(tmp_path / "cache"))
    yield


@pytest.fixture
def tiny_eva02_config():
    """A 2-block EVA-02 classifier at 56 px / patch 14 (4x4 grid): cheap but with every structural feature."""
    from paddlemix_eva.models import EVA02VisionTransformerConfig

    return EVA02VisionTransformerConfig(
        image_size=56, patch_size=14, embed_dim=128, layers=2, num_heads=2, mlp_ratio=2.6667, qkv_bias=True,
        naiveswiglu=True, subln=True, rope=True, intp_freq=True, pt_hw_seq_len=16, num_classes=10,
    )
