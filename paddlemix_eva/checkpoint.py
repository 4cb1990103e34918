"""Reading and writing weight files: Paddle `.pdparams`, `.safetensors` (no torch needed), PyTorch `.pt/.pth/.bin`.

State dicts travel as `{key: numpy array}`; writes are atomic (temporary file, then rename), so an interrupted
save never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
import zipfile
from typing import Dict, Iterator, Mapping

import numpy as np

logger = logging.getLogger(__name__)

StateDict = Dict[str, np.ndarray]

PADDLE_SUFFIXES = (".pdparams",)
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
NUMPY_SUFFIXES = (".npz",)
#: nesting keys of training checkpoints, tried in this order (EMA weights are what upstream publishes)
WRAPPER_KEYS = ("model_ema", "model", "module", "state_dict")


class CheckpointError(ValueError):
    """A weight file that cannot be read or does not hold what was expected."""


try:  # raised for truncated / garbage .safetensors; not a subclass of any builtin error but Exception
    from safetensors import SafetensorError as _SafetensorError
except ImportError:  # pragma: no cover - safetensors is a requirement

    class _SafetensorError(Exception):
        pass


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # torch.Tensor
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()
    if hasattr(value, "numpy"):  # paddle.Tensor
        if str(value.dtype) in ("paddle.bfloat16", "bfloat16"):
            value = value.astype("float32")
        return value.numpy()
    return np.asarray(value)


def unwrap_state_dict(obj: Mapping, path: str = "<memory>") -> Mapping:
    """Find the parameter dict inside a training checkpoint (`model_ema` / `model` / `module` / `state_dict`)."""
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        tensors = [k for k, v in obj.items() if hasattr(v, "shape")]
        if tensors:
            return obj
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping) and obj[key]:
                logger.info("%s: using the state dict nested under %r", path, key)
                obj = obj[key]
                break
        else:
            break
    if not isinstance(obj, Mapping) or not any(hasattr(v, "shape") for v in obj.values()):
        found = list(obj.keys())[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path}: no tensors found (top-level entries: {found}); expected a state dict, possibly nested under "
            f"one of {list(WRAPPER_KEYS)}"
        )
    return obj


def _strip_module_prefix(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str) -> StateDict:
    """Read a weight file into `{key: numpy array}`; errors name the file and what went wrong."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weight file not found: {path}")
    lower = path.lower()
    try:
        if lower.endswith(SAFETENSORS_SUFFIXES):
            from safetensors.numpy import load_file

            raw: Mapping = load_file(path)
        elif lower.endswith(PADDLE_SUFFIXES):
            import paddle

            raw = paddle.load(path, return_numpy=True)
        elif lower.endswith(NUMPY_SUFFIXES):
            with np.load(path) as data:
                raw = {k: data[k] for k in data.files}
        elif lower.endswith(TORCH_SUFFIXES):
            raw = _read_torch(path)
        else:
            raise CheckpointError(
                f"{path}: unknown weight file type; expected one of "
                f"{PADDLE_SUFFIXES + SAFETENSORS_SUFFIXES + TORCH_SUFFIXES + NUMPY_SUFFIXES}"
            )
    except (CheckpointError, FileNotFoundError, ImportError):
        raise
    except MemoryError as err:  # a corrupt pickle header can declare an absurd size (paddle.load lets it through)
        raise CheckpointError(
            f"{path}: ran out of memory reading the weight file; it is corrupt (declares an impossible size) or too "
            "large for this machine"
        ) from err
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        RuntimeError,
        OverflowError,
        _SafetensorError,
    ) as err:
        raise CheckpointError(f"{path}: cannot read the weight file, it is truncated or corrupt ({err})") from err
    state = unwrap_state_dict(raw, path)
    return _strip_module_prefix({k: _to_numpy(v) for k, v in state.items() if hasattr(v, "shape")})


def _read_torch(path: str) -> Mapping:
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"{path} is a PyTorch checkpoint; reading it needs torch (CPU build is enough: "
            "`pip install torch`), or convert it to .safetensors first"
        ) from err
    return torch.load(path, map_location="cpu", weights_only=False)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block completes, else is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # keep the real extension last: readers pick the format by it
    suffix = ".part" + os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_paddle_state_dict(state: StateDict, path: str) -> None:
    """Write `{key: array}` as a Paddle `.pdparams` file, atomically."""
    import paddle

    tensors = {k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in state.items()}
    with atomic_path(path) as tmp:
        paddle.save(tensors, tmp)
