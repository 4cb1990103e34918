"""paddlemix-eva: EVA-02, EVA-CLIP, MAE and Evo-ViT for PaddlePaddle.

Importing the package before Paddle lets it pick MKL's fast code path on AMD CPUs (see `runtime.py`).
"""
from . import runtime as _runtime

_runtime.configure_cpu_backend()

from .version import __version__  # noqa: E402
from .zoo import get_model, list_models  # noqa: E402

__all__ = ["__version__", "get_model", "list_models"]
