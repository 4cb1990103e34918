"""paddlemix-eva: EVA-02, EVA-CLIP, MAE and Evo-ViT for PaddlePaddle.

Importing the package before Paddle lets it pick MKL's fast code path on AMD CPUs (see `runtime.py`).
"""
from . import runtime as _runtime

_runtime.require_paddle()
_runtime.configure_cpu_backend()

from . import logs as _logs  # noqa: E402

_logs.silence_import_noise()

from .version import __version__  # noqa: E402
from .zoo import get_model, list_models  # noqa: E402

__all__ = ["__version__", "get_model", "list_models", "inference_model", "extract_features"]


def __getattr__(name: str):
    """`inference_model` / `extract_features` load on first use, so `import paddlemix_eva` stays light."""
    if name in ("inference_model", "extract_features"):
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'paddlemix_eva' has no attribute {name!r}")
