"""Reference implementations (timm, open_clip on CPU torch) and helpers to make parity tests sensitive."""
from __future__ import annotations

import functools
import importlib
import os

import numpy as np
import pytest


@functools.lru_cache(maxsize=None)
def _prepare_torchvision() -> None:
    """The only torchvision wheels reachable next to CPU torch are CUDA builds whose fake-kernel registrations
    fail on import ("operator torchvision::nms does not exist"). Define the two schemas first; timm and
    open_clip never call them."""
    import torch

    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # noqa: BLE001 - any import failure means the schemas are missing
        pass
    import sys

    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, float dets_scale, int dets_zero_point, Tensor qscores, float scores_scale, "
               "int scores_zero_point, float iou_threshold) -> Tensor")
    _prepare_torchvision.library = lib  # keep the registration alive


#: set by `make test`: a missing parity peer fails the test instead of skipping it, so the suite cannot pass
#: without the comparisons it claims
REQUIRE_PEERS_ENV = "PADDLEMIX_EVA_REQUIRE_PEERS"


def _import_peer(name: str):
    if os.environ.get(REQUIRE_PEERS_ENV, "0") in ("", "0"):
        return pytest.importorskip(name)
    try:
        return importlib.import_module(name)
    except ImportError as err:
        pytest.fail(f"parity peer {name} is not importable ({err}); `make install-test` installs it "
                    f"({REQUIRE_PEERS_ENV}=1 makes this a failure, not a skip)")


@functools.lru_cache(maxsize=None)
def _torch_threads(torch) -> None:
    torch.set_num_threads(2)


def import_torch():
    torch = _import_peer("torch")
    _torch_threads(torch)
    return torch


def import_timm():
    import_torch()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _prepare_torchvision()
    return _import_peer("timm")


def import_open_clip():
    import_torch()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _prepare_torchvision()
    return _import_peer("open_clip")


def make_sensitive(module, seed: int = 0, qk_gain: float = 5.0) -> None:
    """Perturb a randomly initialised torch model so that layout and RoPE bugs show in the outputs: 1-D
    parameters redrawn (LN weights 1 + 0.1 N, biases 0.02 N), heads redrawn, q/k projections scaled by `qk_gain`
    (a wrong RoPE position scale moves logits by ~1e-4 at gain 1 but ~6e-3 at gain 5)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim == 1:
                if name.endswith("weight"):
                    param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))
                else:
                    param.copy_(0.02 * torch.randn(param.shape, generator=gen))
            elif name.endswith("head.weight"):
                param.copy_(0.02 * torch.randn(param.shape, generator=gen))
        for name, param in module.named_parameters():
            if name.endswith("attn.qkv.weight"):
                dim = param.shape[0] // 3
                param[: 2 * dim] *= qk_gain
            elif name.endswith(("attn.q_proj.weight", "attn.k_proj.weight")):
                param *= qk_gain


def torch_state_dict(module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def seeded_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
