"""paddlemix-eva: EVA-02, EVA-CLIP, MAE and Evo-ViT for PaddlePaddle.

Importing the package before Paddle lets it pick MKL's fast code path on AMD CPUs (see `utils/runtime.py`).
The package's map: `layers/`
(blocks), `models/<family>/` (configuration, modeling, zoo table, conversion), `data/`, `trainer/`, `tasks/`
(inference, export, evaluation, zero-shot, FLOPs), `convert/`, `utils/`, `zoo` (the registry) and `cli`.
"""
from paddlemix_eva.utils import runtime as _runtime

_runtime.require_paddle()
_runtime.configure_cpu_backend()

from paddlemix_eva.utils import aliases as _aliases  # noqa: E402
from paddlemix_eva.utils import logs as _logs  # noqa: E402

_logs.silence_import_noise()
_aliases.install()

from paddlemix_eva.version import __version__  # noqa: E402
from paddlemix_eva.zoo import get_model, list_models  # noqa: E402

__all__ = ["__version__", "get_model", "list_models", "inference_model", "extract_features"]


def __getattr__(name: str):
    """`inference_model` / `extract_features` load on first use, so `import paddlemix_eva` stays light."""
    if name in ("inference_model", "extract_features"):
        from paddlemix_eva.tasks import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'paddlemix_eva' has no attribute {name!r}")
