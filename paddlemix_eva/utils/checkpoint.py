"""Reading and writing weight files: Paddle `.pdparams`, `.safetensors`, `.npz`, PyTorch `.pt/.pth/.bin`.

Files are deserialised by `serialization` only (no code from a file runs, torch is not needed); this module finds
the state dict inside. State dicts travel as `{key: numpy array}`; writes are atomic (temporary file, then rename),
so an interrupted save never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Dict, Iterator, Mapping

import numpy as np

from paddlemix_eva.utils.serialization import (  # noqa: F401  (re-exported: the errors and suffixes were defined here)
    NUMPY_SUFFIXES,
    PADDLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    TORCH_SUFFIXES,
    CheckpointError,
    UnsafeFileError,
    load_state_dict_file,
)

logger = logging.getLogger(__name__)

StateDict = Dict[str, np.ndarray]

#: nesting keys of training checkpoints, tried in this order (EMA weights are what upstream publishes)
WRAPPER_KEYS = ("model_ema", "model", "module", "state_dict")


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
    raw = load_state_dict_file(path)
    state = unwrap_state_dict(raw, path)
    return _strip_module_prefix({k: _to_numpy(v) for k, v in state.items() if hasattr(v, "shape")})


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (os.umask must set it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_paddle_state_dict(state: StateDict, path: str) -> None:
    """Write `{key: array}` as a Paddle `.pdparams` file, atomically."""
    import paddle

    tensors = {k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in state.items()}
    with atomic_path(path) as tmp:
        paddle.save(tensors, tmp)
