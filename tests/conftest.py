"""Shared fixtures. `paddlemix_eva` is imported before paddle so its CPU backend settings apply."""
import os
import sys

import numpy as np
import pytest

import paddlemix_eva  # noqa: F401  (must precede `import paddle`)
import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch):
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
